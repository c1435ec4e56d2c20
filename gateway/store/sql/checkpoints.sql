-- Signed, timestamped tree heads of the audit log (see gateway/audit/checkpoints.py).
-- A row exists only once its note is signed AND timestamped: the note is authoritative, the
-- size/root/at columns are copies kept for queries.
-- name: schema
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size         INTEGER PRIMARY KEY,  -- number of leaves covered (seq 0 .. size-1)
    root         BLOB    NOT NULL,     -- RFC 9162 tree hash of those leaves
    at           TEXT    NOT NULL,     -- ISO 8601 UTC, as written in the note
    note         BLOB    NOT NULL,     -- the signed note: body, blank line, signature line
    signer_chain TEXT    NOT NULL,     -- PEM: the audit key's certificate, then intermediates
    timestamp    BLOB    NOT NULL      -- DER RFC 3161 TimeStampToken over SHA-256(note)
);

-- name: insert
INSERT INTO audit_checkpoints (size, root, at, note, signer_chain, timestamp)
VALUES (:size, :root, :at, :note, :signer_chain, :timestamp)
ON CONFLICT (size) DO NOTHING;

-- name: latest
SELECT size, root, at, note, signer_chain, timestamp FROM audit_checkpoints ORDER BY size DESC LIMIT 1;

-- name: get
SELECT size, root, at, note, signer_chain, timestamp FROM audit_checkpoints WHERE size = :size;

-- name: all
SELECT size, root, at, note, signer_chain, timestamp FROM audit_checkpoints ORDER BY size;

-- name: page
SELECT size, root, at, note, signer_chain, timestamp FROM audit_checkpoints
WHERE size < :before ORDER BY size DESC LIMIT :limit;

-- name: sizes
-- The sizes alone (an integer column the store always reads): which rows a page that cannot be
-- read holds, to read them one by one (gateway/audit/checkpoints.py, checkpoint_rows).
SELECT size FROM audit_checkpoints WHERE size < :before ORDER BY size DESC LIMIT :limit;

-- name: covering
-- The first checkpoint that covers leaf :seq (size > seq).
SELECT size, root, at, note, signer_chain, timestamp FROM audit_checkpoints
WHERE size > :seq ORDER BY size LIMIT 1;

-- name: newest_size
-- The latest checkpoint's size (NULL when there is none): an integer the store always reads.
SELECT max(size) AS size FROM audit_checkpoints;

-- name: after
-- A page of checkpoints in order, up to :upto (`audit verify` reads them a page at a time).
SELECT size, root, at, note, signer_chain, timestamp FROM audit_checkpoints
WHERE size > :after AND size <= :upto ORDER BY size LIMIT :limit;

-- name: sizes_after
-- The sizes alone of the page `after` reads: which rows a page the store cannot hand over holds.
SELECT size FROM audit_checkpoints WHERE size > :after AND size <= :upto ORDER BY size LIMIT :limit;
