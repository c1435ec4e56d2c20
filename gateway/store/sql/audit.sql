-- name: schema
CREATE TABLE IF NOT EXISTS audit_events (
    seq        INTEGER PRIMARY KEY,      -- 0, 1, 2 … with no gaps: the leaf index
    at         TEXT    NOT NULL,         -- ISO 8601 UTC
    action     TEXT    NOT NULL,
    member     TEXT,
    service    TEXT,
    dossier    TEXT,
    document   TEXT,
    citizen    TEXT,                     -- keyed hash of a personal id, never the id
    entry      BLOB    NOT NULL,         -- the canonical JSON that was hashed
    leaf_hash  BLOB    NOT NULL,         -- SHA-256(0x00 || entry), RFC 9162 leaf
    chain_hash BLOB    NOT NULL          -- SHA-256(previous chain_hash || leaf_hash)
);
CREATE INDEX IF NOT EXISTS audit_events_dossier ON audit_events (dossier) WHERE dossier IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_document ON audit_events (document) WHERE document IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_citizen ON audit_events (citizen) WHERE citizen IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events (at);
-- The people an entry's event disclosed besides its citizen (its "discloses": keyed hashes, the
-- parents a citizen lookup's answer names), one row each, so that a search by person finds the
-- entry as it finds it by its citizen column. Written by the trigger below from the entry itself,
-- in the statement that inserts it: no other statement in the writer's batch, and no row that
-- can differ from the entry but by tampering, which `audit verify` compares (audit.verify_range,
-- audit.verify_page). The WHEN test keeps every other entry's insert as it was; an entry's
-- strings are JSON-escaped, so '"discloses":' in it can only be that key (or a digest's name).
CREATE TABLE IF NOT EXISTS audit_discloses (
    citizen    TEXT    NOT NULL,         -- keyed hash of a personal id, never the id
    seq        INTEGER NOT NULL,         -- audit_events.seq
    PRIMARY KEY (citizen, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_discloses_seq ON audit_discloses (seq);
CREATE TRIGGER IF NOT EXISTS audit_discloses_index AFTER INSERT ON audit_events
WHEN instr(NEW.entry, CAST('"discloses":' AS BLOB)) > 0
BEGIN
    INSERT INTO audit_discloses (citizen, seq)
    SELECT key, NEW.seq FROM json_each(CAST(NEW.entry AS TEXT), '$.discloses');
END;

-- name: head
SELECT seq, chain_hash FROM audit_events ORDER BY seq DESC LIMIT 1;

-- name: insert
INSERT INTO audit_events (seq, at, action, member, service, dossier, document, citizen, entry, leaf_hash, chain_hash)
VALUES (:seq, :at, :action, :member, :service, :dossier, :document, :citizen, :entry, :leaf_hash, :chain_hash);

-- name: range
SELECT seq, entry, leaf_hash, chain_hash FROM audit_events WHERE seq >= :start AND seq < :stop ORDER BY seq;

-- name: verify_range
-- What the verifiers read: the hashed entry and, after it, the columns queries select by, which
-- must say what the entry says (gateway/audit/chain.py, INDEXED), and the citizens the entry's
-- rows of audit_discloses name, as a JSON array (NULL when none), which must be its "discloses".
-- A citizen stored as a blob (written around the gateway), which JSON cannot hold and no search
-- by person (text) finds, is {"blob": its bytes in hex}: compared, it differs from every person.
SELECT seq, entry, leaf_hash, chain_hash, at, action, member, service, dossier, document, citizen,
       (SELECT json_group_array(CASE typeof(d.citizen) WHEN 'blob'
                                THEN json_object('blob', hex(d.citizen)) ELSE d.citizen END)
        FROM audit_discloses AS d WHERE d.seq = audit_events.seq HAVING count(*) > 0) AS discloses
FROM audit_events WHERE seq >= :start AND seq < :stop ORDER BY seq;

-- name: verify_page
-- The same rows as verify_range, as one row that SQLite builds without taking Python's GIL back
-- for each entry (gateway/audit/chain.py, verify_page): how many, the first and last seq, how many
-- rows cannot be laid back to back safely (a missing entry, a hash that is not a 32-byte blob),
-- the entries joined by newlines (an entry holding one splits into too many), the leaf and the
-- chain hashes back to back, and each entry's columns as a JSON array, joined by newlines (a
-- column holding a blob fails the query: json_array refuses blobs, and the verifier then reads
-- the page row by row); last, every row of audit_discloses in the range, as a JSON array of
-- [seq, citizen] in that order (one read of its seq index: nothing per entry).
SELECT count(*) AS n, min(seq) AS first, max(seq) AS last,
       count(*) - count(entry) + total(
           typeof(leaf_hash) != 'blob' OR length(leaf_hash) != 32
           OR typeof(chain_hash) != 'blob' OR length(chain_hash) != 32
       ) AS odd,
       CAST(group_concat(entry, x'0a') AS BLOB) AS entries,
       CAST(group_concat(leaf_hash, x'') AS BLOB) AS leaves,
       CAST(group_concat(chain_hash, x'') AS BLOB) AS chains,
       CAST(group_concat(json_array(at, action, member, service, dossier, document, citizen), x'0a')
            AS BLOB) AS columns,
       (SELECT json_group_array(json_array(seq, citizen)) FROM (
            SELECT seq, citizen FROM audit_discloses WHERE seq >= :start AND seq < :stop
            ORDER BY seq, citizen)) AS discloses
FROM (SELECT * FROM audit_events WHERE seq >= :start AND seq < :stop ORDER BY seq);

-- name: discloses_outside
-- A row of audit_discloses that names no entry (those of entries 0..:size-1, which the verifier
-- read, are compared with their entry; a running gateway's newer entries have their own): a
-- search by its citizen would find the entry appended at its seq. And a row whose seq is not
-- stored as a number (a table made again without the column's type): text and blobs sort after
-- every number, outside the pages the verifier reads, yet the search matches '1' with entry 1
-- (the entries' seq converts it). entry: its seq, or for one that is no number the entry the
-- search finds with it (NULL: none).
SELECT seq, citizen,
       CASE WHEN typeof(seq) IN ('integer', 'real') THEN seq
            ELSE (SELECT e.seq FROM audit_events AS e WHERE e.seq = d.seq)
       END AS entry
FROM audit_discloses AS d
WHERE (seq < 0 OR seq >= :size) AND NOT EXISTS (
    SELECT 1 FROM audit_events AS e WHERE e.seq = d.seq AND typeof(d.seq) = 'integer')
ORDER BY seq LIMIT 1;

-- name: count
SELECT count(*) AS n FROM audit_events;

-- name: by_dossier
SELECT seq, entry FROM audit_events WHERE dossier = :dossier ORDER BY seq;

-- name: query
SELECT seq, entry FROM audit_events
WHERE seq > :after
  AND (:start IS NULL OR at >= :start)
  AND (:stop IS NULL OR at < :stop)
  AND (:member IS NULL OR member = :member)
  AND (:service IS NULL OR service = :service)
  AND (:dossier IS NULL OR dossier = :dossier)
  AND (:document IS NULL OR document = :document)
  -- A citizen's events: those that hold their hash, and every event of a dossier that names them
  -- (its dossier.accepted or dossier.concerns holds the hash; its steps hold none).
  AND (:citizen IS NULL OR citizen = :citizen OR dossier IN (
      SELECT n.dossier FROM audit_events AS n WHERE n.citizen = :citizen AND n.dossier IS NOT NULL)
      -- and the events that disclosed them (a lookup answering their names and ids)
      OR seq IN (SELECT d.seq FROM audit_discloses AS d WHERE d.citizen = :citizen))
ORDER BY seq LIMIT :limit;

-- name: leaves
SELECT seq, leaf_hash FROM audit_events WHERE seq >= :start AND seq < :stop ORDER BY seq;

-- name: get
SELECT seq, at, entry, leaf_hash, chain_hash FROM audit_events WHERE seq = :seq;

-- name: by_document
SELECT seq, entry FROM audit_events WHERE document = :document ORDER BY seq;

-- name: between
SELECT seq, entry FROM audit_events WHERE at >= :start AND at < :stop ORDER BY seq;

-- name: accessors
-- Who touched a citizen's data: one row per member, service and action, with counts and span.
-- An event found only by its index of disclosed people (a lookup whose answer named them as a
-- parent) counts as lookup.discloses, as a log of an earlier version recorded it: not as a
-- lookup of them.
SELECT member, service, action, count(*) AS n, min(at) AS first_at, max(at) AS last_at
FROM (SELECT member, service, at,
             CASE WHEN citizen IS NOT :citizen AND seq IN (
                      SELECT d.seq FROM audit_discloses AS d WHERE d.citizen = :citizen)
                  THEN 'lookup.discloses' ELSE action END AS action
      FROM audit_events WHERE (citizen = :citizen OR dossier IN (
            SELECT n.dossier FROM audit_events AS n WHERE n.citizen = :citizen AND n.dossier IS NOT NULL)
            OR seq IN (SELECT d.seq FROM audit_discloses AS d WHERE d.citizen = :citizen))
        AND (:start IS NULL OR at >= :start) AND (:stop IS NULL OR at < :stop))
GROUP BY member, service, action ORDER BY min(at);

-- name: extent_dossier
-- What an export of the scope would hold, before any entry is read (gateway/audit/bundle.py,
-- _extent): how many events, and of those the anchor (the latest checkpoint's size) covers, their
-- entries' bytes, their number, and how many lie left of the tree's first split.
SELECT count(*) AS n,
       coalesce(sum(CASE WHEN seq < :anchor THEN length(entry) END), 0) AS bytes,
       coalesce(sum(CASE WHEN seq < :anchor THEN 1 END), 0) AS covered,
       coalesce(sum(CASE WHEN seq < :split THEN 1 END), 0) AS left_side
FROM audit_events WHERE dossier = :dossier;

-- name: extent_document
SELECT count(*) AS n,
       coalesce(sum(CASE WHEN seq < :anchor THEN length(entry) END), 0) AS bytes,
       coalesce(sum(CASE WHEN seq < :anchor THEN 1 END), 0) AS covered,
       coalesce(sum(CASE WHEN seq < :split THEN 1 END), 0) AS left_side
FROM audit_events WHERE document = :document;

-- name: extent_between
SELECT count(*) AS n,
       coalesce(sum(CASE WHEN seq < :anchor THEN length(entry) END), 0) AS bytes,
       coalesce(sum(CASE WHEN seq < :anchor THEN 1 END), 0) AS covered,
       coalesce(sum(CASE WHEN seq < :split THEN 1 END), 0) AS left_side
FROM audit_events WHERE at >= :start AND at < :stop;

-- name: times
-- Each entry's time (its column, which `audit verify` has found equal to the entry's own), in order.
SELECT seq, at FROM audit_events WHERE seq >= :start AND seq < :stop ORDER BY seq;
