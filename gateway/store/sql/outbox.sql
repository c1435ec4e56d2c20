-- Durable outbox jobs (gateway.outbox). Times are REAL epoch seconds. Written to run on SQLite and,
-- with the same block names, on PostgreSQL (RETURNING, ON CONFLICT DO NOTHING, no LIMIT on UPDATE).
-- A time ahead is given as :now plus a span (:delay, :lease), not as a moment: PostgreSQL's
-- versions add the span to the server's clock, not to the caller's :now (see postgres/outbox.sql).

-- name: schema
CREATE TABLE IF NOT EXISTS outbox_jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    key         TEXT    NOT NULL UNIQUE,  -- idempotency key sent to the registry
    payload     TEXT    NOT NULL,         -- JSON object
    dossier     TEXT,
    document    TEXT,
    state       TEXT    NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_after   REAL    NOT NULL,
    owner       TEXT,                     -- "<worker>/<claim token>" while running
    lease_until REAL,                     -- while running: after this, anyone may re-claim it
    last_error  TEXT,
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_jobs_due ON outbox_jobs (state, run_after);
CREATE INDEX IF NOT EXISTS outbox_jobs_lease ON outbox_jobs (lease_until) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS outbox_jobs_dossier ON outbox_jobs (dossier) WHERE dossier IS NOT NULL;
-- Parked jobs: pending jobs that wait for an endpoint (a receiver, an agency, a registry) whose
-- circuit refused them, not for a time (gateway.outbox.worker, "Parking"). A row says which; the
-- job's run_after is only a late fallback. Woken a few at a time as the endpoint answers, one
-- taken as the next try when a circuit lets a call through. A row whose job has moved on (done,
-- dead) is pruned when its endpoint has no pending parked job left.
CREATE TABLE IF NOT EXISTS outbox_parked (
    job         INTEGER PRIMARY KEY,      -- outbox_jobs.id
    endpoint    TEXT    NOT NULL          -- the circuit's name: "callback https://host:443"
);
CREATE INDEX IF NOT EXISTS outbox_parked_endpoint ON outbox_parked (endpoint, job);
-- Failing jobs: since when a job has been failing, and how many failed tries it has made since,
-- the half-open circuits' trials included (which give the job its attempt back). A job whose
-- calls fail alone is each time its circuit's trial and never runs out of attempts: it is given
-- up once it has been failing for [outbox] give_up_after_s (gateway.outbox.worker, "Giving
-- up"). A row is written at a job's first failed try and goes when the job is done, dead or
-- replayed: a replay starts the clock again. (A table of its own, not a column: a store made by
-- an earlier version gets it as it opens, and a job that never failed costs nothing.)
CREATE TABLE IF NOT EXISTS outbox_failing (
    job         INTEGER PRIMARY KEY,      -- outbox_jobs.id
    since       REAL    NOT NULL,         -- its first failed try (the store's clock)
    tries       INTEGER NOT NULL          -- failed tries since, trials included
);

-- name: enqueue
INSERT INTO outbox_jobs (kind, key, payload, dossier, document, state, attempts, run_after,
                         created_at, updated_at)
VALUES (:kind, :key, :payload, :dossier, :document, 'pending', 0, :now + :delay, :now, :now)
ON CONFLICT (key) DO NOTHING
RETURNING id;

-- name: claim
-- Due pending jobs, each for one more attempt. (A running job whose lease ran out is taken over
-- by reclaim, below, first.) PostgreSQL's version also locks the rows it takes.
UPDATE outbox_jobs
SET state = 'running', owner = :owner, lease_until = :now + :lease,
    attempts = attempts + 1, updated_at = :now
WHERE id IN (
    SELECT id FROM outbox_jobs
    WHERE state = 'pending' AND run_after <= :now
    ORDER BY run_after, id
    LIMIT :limit
)
RETURNING id, kind, key, payload, dossier, document, state, attempts, run_after, owner,
          lease_until, last_error, created_at, updated_at;

-- name: reclaim
-- Running jobs whose holder's lease ran out: that gateway was killed, hung or lost the store in
-- the middle of an attempt, whose outcome nobody recorded. Taken over (a new owner, attempts
-- unchanged) only for the taker to record that attempt — failed, its outcome unknown — and put
-- the job back by its retry policy or bury it: the lost attempt counts, and is told to the
-- job's handler (a flow step's history shows a write whose answer was lost). Never one in :busy
-- (a JSON array of job ids): the caller is running those itself, whatever their leases say.
UPDATE outbox_jobs
SET owner = :owner, lease_until = :now + :lease, updated_at = :now
WHERE id IN (
    SELECT id FROM outbox_jobs
    WHERE state = 'running' AND lease_until < :now
      AND id NOT IN (SELECT value FROM json_each(:busy))
    ORDER BY lease_until, id
    LIMIT :limit
)
RETURNING id, kind, key, payload, dossier, document, state, attempts, run_after, owner,
          lease_until, last_error, created_at, updated_at;

-- name: rebase
-- The unfinished jobs last written (updated_at) on a clock ahead of :now: it has been set back
-- since (it ran ahead until NTP or an operator corrected it). Their lease and due time are kept
-- as the spans they were written as, counted from now: trusted as moments, a lease written 30
-- days ahead held a dead gateway's job for 30 days, and a retry due "in 2 s" on that clock waited
-- as long. No wait is cut short and no holder's lease ended: a live holder renews as before.
UPDATE outbox_jobs
SET run_after = :now + (run_after - updated_at),
    lease_until = :now + (lease_until - updated_at),
    updated_at = :now
WHERE state IN ('pending', 'running') AND updated_at > :now;

-- Every block below that finishes a claim is fenced by owner: a holder whose lease was taken
-- over changes nothing.
-- name: renew
-- updated_at too: it says on which clock the lease was written (see rebase).
UPDATE outbox_jobs SET lease_until = :now + :lease, updated_at = :now
WHERE id = :id AND owner = :owner AND state = 'running';

-- name: complete
-- The last error goes with success: a done job listed with it read as a failure (the audit log
-- keeps every attempt's).
UPDATE outbox_jobs
SET state = 'done', owner = NULL, lease_until = NULL, last_error = NULL, updated_at = :now
WHERE id = :id AND owner = :owner AND state = 'running';

-- :refund is 1 when the attempt never reached the registry (circuit open), else 0.
-- name: retry
UPDATE outbox_jobs
SET state = 'pending', owner = NULL, lease_until = NULL, run_after = :now + :delay,
    attempts = attempts - :refund, last_error = coalesce(:error, last_error), updated_at = :now
WHERE id = :id AND owner = :owner AND state = 'running';

-- name: bury
UPDATE outbox_jobs
SET state = 'dead', owner = NULL, lease_until = NULL, last_error = :error, updated_at = :now
WHERE id = :id AND owner = :owner AND state = 'running';

-- name: failed
-- One more failed try of job :job (in the transaction that records it): how long it has now been
-- failing (failing_for, seconds) and its failed tries, this one included. A first failure starts
-- its clock. A clock set back since its first (a time ahead of :now) restarts it from now: an
-- error of the clock never makes a job look as if it had failed longer than it has.
INSERT INTO outbox_failing (job, since, tries) VALUES (:job, :now, 1)
ON CONFLICT (job) DO UPDATE SET tries = outbox_failing.tries + 1,
                                since = min(outbox_failing.since, excluded.since)
RETURNING tries, :now - since AS failing_for;

-- name: recovered
-- Job :job is done, dead or replayed: it is failing no longer (a replay starts its clock again).
DELETE FROM outbox_failing WHERE job = :job;

-- name: forget_payload
-- A done job's payload replaced by what is left of it (gateway.flows.notify: a notification's
-- frozen copy of a dossier's personal data). Never a job still to be run, retried or replayed.
UPDATE outbox_jobs SET payload = :payload WHERE id = :id AND state = 'done';

-- name: replay
UPDATE outbox_jobs
SET state = 'pending', attempts = 0, run_after = :now, updated_at = :now
WHERE id = :id AND state = 'dead';

-- name: get
SELECT id, kind, key, payload, dossier, document, state, attempts, run_after, owner, lease_until,
       last_error, created_at, updated_at
FROM outbox_jobs WHERE id = :id;

-- name: list
SELECT id, kind, key, payload, dossier, document, state, attempts, run_after, owner, lease_until,
       last_error, created_at, updated_at
FROM outbox_jobs
WHERE id > :after_id AND (:state IS NULL OR state = :state)
ORDER BY id
LIMIT :limit;

-- name: of_dossier
-- The other jobs of one kind about a dossier (a portal sync looks for later and in-flight ones;
-- a job waiting for an earlier one, for when that one is due).
SELECT id, key, state, run_after FROM outbox_jobs
WHERE dossier = :dossier AND kind = :kind AND id <> :id;

-- name: counts
-- Every job ever queued (done ones are kept): a scan of the table, for a report, never a poll.
SELECT state, count(*) AS n FROM outbox_jobs GROUP BY state;

-- name: unfinished
-- The jobs not done, by state: the outbox's depth, read from the due index, so that it costs
-- what is queued, not what was ever done (a poll read the whole table: 29 % of a CPU for an idle
-- gateway with 2 million done jobs).
SELECT state, count(*) AS n FROM outbox_jobs
WHERE state IN ('pending', 'running', 'dead') GROUP BY state;

-- name: due_now
-- The next of a dossier's waiting jobs of one kind (the first queued still pending), made due
-- now: the portal's first progress record, once a sync has brought the portal the dossier, and
-- the job that waited for an earlier one of its kind (a callback, a progress record), once that
-- one is done or dead (they waited without looking every second). Only the next, which wakes the
-- one after it in turn: woken all at each step, the fourth version behind a receiver that was
-- down was claimed, and put back, once for each of the three ahead of it.
UPDATE outbox_jobs SET run_after = :now
WHERE id = (
    SELECT id FROM outbox_jobs
    WHERE dossier = :dossier AND kind = :kind AND state = 'pending'
    ORDER BY id
    LIMIT 1
) AND run_after > :now;

-- name: park
-- A job the circuit of :endpoint held back (outbox.retry has put it back, far ahead).
INSERT INTO outbox_parked (job, endpoint) VALUES (:job, :endpoint)
ON CONFLICT (job) DO UPDATE SET endpoint = excluded.endpoint;

-- name: unpark
-- When the job's attempt ends (done, retried, dead, put back): the endpoint it was parked on, if
-- any. The row is kept while the job is woken and run, so that one that ends without calling that
-- endpoint (a sync or a callback superseded, done unsent) passes its turn on to the next parked
-- there: nothing answered to wake it, and the backlog behind a receiver back from an outage went
-- out one try per reset period.
DELETE FROM outbox_parked WHERE job = :job
RETURNING endpoint;

-- name: parked_endpoints
-- The endpoints that have parked jobs, one index seek each (a skip scan: the rows are many, the
-- endpoints few), for every claim.
WITH RECURSIVE e (endpoint) AS (
    SELECT min(endpoint) FROM outbox_parked
    UNION ALL
    SELECT (SELECT min(p.endpoint) FROM outbox_parked AS p WHERE p.endpoint > e.endpoint)
    FROM e WHERE e.endpoint IS NOT NULL
)
SELECT endpoint FROM e WHERE endpoint IS NOT NULL;

-- name: claim_parked
-- The first :limit pending jobs parked on :endpoint (the oldest), claimed now whatever their
-- run_after says (made now): the circuit lets a call through, and these are the next tries.
UPDATE outbox_jobs
SET state = 'running', owner = :owner, lease_until = :now + :lease, run_after = :now,
    attempts = attempts + 1, updated_at = :now
WHERE id IN (
    SELECT p.job FROM outbox_parked AS p JOIN outbox_jobs AS j ON j.id = p.job
    WHERE p.endpoint = :endpoint AND j.state = 'pending'
    ORDER BY p.job
    LIMIT :limit
)
RETURNING id, kind, key, payload, dossier, document, state, attempts, run_after, owner,
          lease_until, last_error, created_at, updated_at;

-- name: wake_parked
-- The first :limit jobs parked on :endpoint made due now: it answered. (Each answer wakes a few,
-- not all: a receiver back after a day's outage gets its backlog as fast as it takes it, and
-- the other jobs keep their place in the claims.)
UPDATE outbox_jobs SET run_after = :now
WHERE id IN (
    SELECT p.job FROM outbox_parked AS p JOIN outbox_jobs AS j ON j.id = p.job
    WHERE p.endpoint = :endpoint AND j.state = 'pending' AND j.run_after > :now
    ORDER BY p.job
    LIMIT :limit
)
RETURNING id;

-- name: prune_parked
-- The rows of :endpoint whose jobs are done or dead (taken when their fallback time came).
-- Never a pending or running one's: that may be being parked again as this runs.
DELETE FROM outbox_parked
WHERE endpoint = :endpoint AND NOT EXISTS (
    SELECT 1 FROM outbox_jobs AS j
    WHERE j.id = outbox_parked.job AND j.state IN ('pending', 'running')
);
