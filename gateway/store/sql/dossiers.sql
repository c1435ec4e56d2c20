-- name: schema
CREATE TABLE IF NOT EXISTS dossiers (
    code         TEXT PRIMARY KEY,
    client       TEXT NOT NULL,            -- the subsystem that submitted it
    procedure    TEXT NOT NULL,
    flow         TEXT NOT NULL,
    status       TEXT NOT NULL,
    body         BLOB NOT NULL,            -- current request document (canonical JSON; corrections merge here)
    body_digest  TEXT NOT NULL,            -- SHA-256 of the body as first accepted: the idempotency check
    callback_url TEXT,
    version      INTEGER NOT NULL DEFAULT 0, -- bumps on every status change; numbers callbacks
    request_id   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dossiers_status ON dossiers (status, code);
CREATE TABLE IF NOT EXISTS dossier_steps (
    dossier    TEXT    NOT NULL REFERENCES dossiers (code),
    idx        INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    registry   TEXT    NOT NULL,
    operation  TEXT    NOT NULL,
    status     TEXT    NOT NULL,           -- pending | running | done | refused | failed
    attempts   INTEGER NOT NULL DEFAULT 0,
    job_id     INTEGER,
    result     BLOB,
    reference  TEXT,
    error      TEXT,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (dossier, idx)
);
CREATE TABLE IF NOT EXISTS step_history (
    id        INTEGER PRIMARY KEY,
    dossier   TEXT    NOT NULL,
    idx       INTEGER NOT NULL,
    at        TEXT    NOT NULL,
    attempt   INTEGER NOT NULL,
    outcome   TEXT    NOT NULL,
    error     TEXT,
    reference TEXT
);
CREATE INDEX IF NOT EXISTS step_history_dossier ON step_history (dossier, idx, id);
-- What a write step sends, as built when it was scheduled: each attempt (retries, replays,
-- resumes) sends exactly this, so an upgrade that changes how a step builds its request cannot
-- send another request under an idempotency key a registry already holds. A correction forgets
-- it where nothing was sent that the registry may hold (dossiers.correct).
CREATE TABLE IF NOT EXISTS step_requests (
    dossier TEXT    NOT NULL,
    idx     INTEGER NOT NULL,
    body    BLOB    NOT NULL,              -- canonical JSON of the step's parameters
    PRIMARY KEY (dossier, idx)
);

-- name: insert
INSERT INTO dossiers (code, client, procedure, flow, status, body, body_digest, callback_url, request_id, created_at, updated_at)
VALUES (:code, :client, :procedure, :flow, 'accepted', :body, :digest, :callback_url, :request_id, :now, :now);

-- name: get
SELECT * FROM dossiers WHERE code = :code;

-- name: list_by_status
SELECT code, flow, status, updated_at FROM dossiers
WHERE (:status IS NULL OR status = :status) AND (:client IS NULL OR client = :client) AND code > :after
ORDER BY code LIMIT :limit;

-- name: set_status
UPDATE dossiers SET status = :status, version = version + 1, updated_at = :now WHERE code = :code;

-- name: set_body
UPDATE dossiers SET body = :body, updated_at = :now WHERE code = :code;

-- name: insert_step
INSERT INTO dossier_steps (dossier, idx, name, registry, operation, status, updated_at)
VALUES (:dossier, :idx, :name, :registry, :operation, 'pending', :now);

-- name: steps
-- With the state of each step's outbox job: a step is running while its job is.
SELECT s.*, j.state AS job_state
FROM dossier_steps AS s LEFT JOIN outbox_jobs AS j ON j.id = s.job_id
WHERE s.dossier = :dossier ORDER BY s.idx;

-- name: step
SELECT * FROM dossier_steps WHERE dossier = :dossier AND idx = :idx;

-- name: step_scheduled
UPDATE dossier_steps SET status = 'pending', job_id = :job_id, error = NULL, updated_at = :now
WHERE dossier = :dossier AND idx = :idx;

-- name: step_done
-- status: done, or refused (a registry's verdict, in error; the flow went on).
UPDATE dossier_steps SET status = :status, attempts = :attempts, result = :result, reference = :reference,
    error = :error, updated_at = :now
WHERE dossier = :dossier AND idx = :idx;

-- name: step_failed
-- A reference: the registry recorded the write before the attempt failed (kept once known).
UPDATE dossier_steps SET status = :status, attempts = :attempts, error = :error,
    reference = COALESCE(:reference, reference), updated_at = :now
WHERE dossier = :dossier AND idx = :idx;

-- name: request
SELECT body FROM step_requests WHERE dossier = :dossier AND idx = :idx;

-- name: keep_request
INSERT INTO step_requests (dossier, idx, body) VALUES (:dossier, :idx, :body)
ON CONFLICT (dossier, idx) DO NOTHING;

-- name: forget_request
DELETE FROM step_requests WHERE dossier = :dossier AND idx = :idx;

-- name: add_history
INSERT INTO step_history (dossier, idx, at, attempt, outcome, error, reference)
VALUES (:dossier, :idx, :at, :attempt, :outcome, :error, :reference);

-- name: history
SELECT idx, at, attempt, outcome, error, reference FROM step_history WHERE dossier = :dossier ORDER BY id;

-- name: count_by_status
SELECT status, count(*) AS n FROM dossiers GROUP BY status;
