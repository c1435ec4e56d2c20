-- PostgreSQL versions of blocks in ../audit.sql. Each block names the sha256 (first 16 hex) of the
-- block it ports, so a change there fails tests/store until this file follows.

-- name: schema
-- base: 466bf0f83a357d76
-- seq is given by audit.append, never by a default: no identity. BIGINT = SQLite's 64-bit INTEGER.
CREATE TABLE IF NOT EXISTS audit_events (
    seq        BIGINT  PRIMARY KEY,
    at         TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    member     TEXT,
    service    TEXT,
    dossier    TEXT,
    document   TEXT,
    citizen    TEXT,
    entry      BYTEA   NOT NULL,
    leaf_hash  BYTEA   NOT NULL,
    chain_hash BYTEA   NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_dossier ON audit_events (dossier) WHERE dossier IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_document ON audit_events (document) WHERE document IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_citizen ON audit_events (citizen) WHERE citizen IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events (at);
-- See ../audit.sql: the people an entry disclosed, written from the entry as it is inserted.
-- (CREATE OR REPLACE: this script runs again, whole, whenever it changes.)
CREATE TABLE IF NOT EXISTS audit_discloses (
    citizen    TEXT    NOT NULL,
    seq        BIGINT  NOT NULL,
    PRIMARY KEY (citizen, seq)
);
CREATE INDEX IF NOT EXISTS audit_discloses_seq ON audit_discloses (seq);
CREATE OR REPLACE FUNCTION lienthong_audit_discloses() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO audit_discloses (citizen, seq)
    SELECT jsonb_object_keys(convert_from(NEW.entry, 'UTF8')::jsonb -> 'discloses'), NEW.seq;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE TRIGGER audit_discloses_index AFTER INSERT ON audit_events FOR EACH ROW
WHEN (position(convert_to('"discloses":', 'UTF8') IN NEW.entry) > 0)
EXECUTE FUNCTION lienthong_audit_discloses();
-- audit.append reads the head, then inserts seq + 1. Concurrent writers must take turns or two of
-- them read the same head. The lock cannot sit in the head query itself: a READ COMMITTED
-- statement's snapshot is taken before it waits, so it would still miss the entry the previous
-- holder committed. A VOLATILE function takes a fresh snapshot for each query it runs, so locking
-- first and reading second sees every entry committed before the lock was granted. The lock is a
-- transaction lock keyed by schema: it is released at COMMIT/ROLLBACK, and separate schemas (one
-- per test, or per tenant) do not wait for each other. Read-only units skip it: they cannot append,
-- and their snapshot is fixed anyway.
-- (documents.add_delivery takes the same turn: see there.)
CREATE OR REPLACE FUNCTION lienthong_audit_turn() RETURNS void
LANGUAGE sql VOLATILE AS $fn$ SELECT pg_advisory_xact_lock(1818588020, hashtext(current_schema())) $fn$;
CREATE OR REPLACE FUNCTION lienthong_audit_head() RETURNS TABLE (seq BIGINT, chain_hash BYTEA)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    IF current_setting('transaction_read_only') <> 'on' THEN
        PERFORM lienthong_audit_turn();
    END IF;
    RETURN QUERY SELECT e.seq, e.chain_hash FROM audit_events AS e ORDER BY e.seq DESC LIMIT 1;
END
$fn$;

-- name: head
-- base: 9bb30959ee41f2d5
-- Serialises appenders until their transaction ends: see lienthong_audit_head() in the schema.
SELECT seq, chain_hash FROM lienthong_audit_head();

-- name: query
-- base: f96c2e2981948329
-- PostgreSQL cannot type a parameter whose first use is ":x IS NULL": cast it.
SELECT seq, entry FROM audit_events
WHERE seq > :after
  AND (CAST(:start AS TEXT) IS NULL OR at >= :start)
  AND (CAST(:stop AS TEXT) IS NULL OR at < :stop)
  AND (CAST(:member AS TEXT) IS NULL OR member = :member)
  AND (CAST(:service AS TEXT) IS NULL OR service = :service)
  AND (CAST(:dossier AS TEXT) IS NULL OR dossier = :dossier)
  AND (CAST(:document AS TEXT) IS NULL OR document = :document)
  AND (CAST(:citizen AS TEXT) IS NULL OR citizen = :citizen OR dossier IN (
      SELECT n.dossier FROM audit_events AS n WHERE n.citizen = :citizen AND n.dossier IS NOT NULL)
      OR seq IN (SELECT d.seq FROM audit_discloses AS d WHERE d.citizen = :citizen))
ORDER BY seq LIMIT :limit;

-- name: accessors
-- base: 5db5577fcf32cca2
SELECT member, service, action, count(*) AS n, min(at) AS first_at, max(at) AS last_at
FROM (SELECT member, service, at,
             CASE WHEN citizen IS DISTINCT FROM :citizen AND seq IN (
                      SELECT d.seq FROM audit_discloses AS d WHERE d.citizen = :citizen)
                  THEN 'lookup.discloses' ELSE action END AS action
      FROM audit_events WHERE (citizen = :citizen OR dossier IN (
            SELECT n.dossier FROM audit_events AS n WHERE n.citizen = :citizen AND n.dossier IS NOT NULL)
            OR seq IN (SELECT d.seq FROM audit_discloses AS d WHERE d.citizen = :citizen))
        AND (CAST(:start AS TEXT) IS NULL OR at >= :start) AND (CAST(:stop AS TEXT) IS NULL OR at < :stop)
     ) AS touched
GROUP BY member, service, action ORDER BY min(at);

-- name: verify_page
-- base: 5fd6db9721f015da
-- PostgreSQL's aggregates take their order; its columns cannot hold a blob, nor its entry and
-- hashes a NULL. Each array is written as msgspec writes the entry's fields (no spaces), so that a
-- clean entry's compare equal; one that differs only in how it escapes falls back to
-- verify_range, as any page that fails here does.
SELECT count(*) AS n, min(seq) AS first, max(seq) AS last,
       count(*) FILTER (WHERE length(leaf_hash) <> 32 OR length(chain_hash) <> 32) AS odd,
       string_agg(entry, '\x0a'::bytea ORDER BY seq) AS entries,
       string_agg(leaf_hash, ''::bytea ORDER BY seq) AS leaves,
       string_agg(chain_hash, ''::bytea ORDER BY seq) AS chains,
       convert_to(string_agg(
           '[' || coalesce(to_json(at)::text, 'null') || ',' || coalesce(to_json(action)::text, 'null')
           || ',' || coalesce(to_json(member)::text, 'null') || ',' || coalesce(to_json(service)::text, 'null')
           || ',' || coalesce(to_json(dossier)::text, 'null') || ',' || coalesce(to_json(document)::text, 'null')
           || ',' || coalesce(to_json(citizen)::text, 'null') || ']',
           E'\n' ORDER BY seq), 'UTF8') AS columns,
       (SELECT coalesce(json_agg(json_build_array(d.seq, d.citizen)
                                 ORDER BY d.seq, d.citizen COLLATE "C")::text, '[]')
        FROM audit_discloses AS d WHERE d.seq >= :start AND d.seq < :stop) AS discloses
FROM audit_events WHERE seq >= :start AND seq < :stop;

-- name: verify_range
-- base: 388f6fcdeeb6543c
-- json_agg for SQLite's json_group_array; an aggregate of no rows is NULL here without HAVING.
-- The citizen column is text, and holds nothing else: a bytea written to it is converted to text.
SELECT seq, entry, leaf_hash, chain_hash, at, action, member, service, dossier, document, citizen,
       (SELECT json_agg(d.citizen) FROM audit_discloses AS d
        WHERE d.seq = audit_events.seq)::text AS discloses
FROM audit_events WHERE seq >= :start AND seq < :stop ORDER BY seq;

-- name: discloses_outside
-- base: 2451fcdc7b2ae919
-- The column is typed here: every seq is a number, and entry is it.
SELECT seq, citizen, seq AS entry FROM audit_discloses AS d
WHERE (seq < 0 OR seq >= :size) AND NOT EXISTS (SELECT 1 FROM audit_events AS e WHERE e.seq = d.seq)
ORDER BY seq LIMIT 1;
