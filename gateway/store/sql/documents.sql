-- Document exchange (gateway.exchange): packages accepted by the hub, one delivery per recipient,
-- each recipient's status history. Blobs (packages, attachments) live on disk by SHA-256; rows name
-- them. Times are ISO 8601 UTC text. Same block names would serve PostgreSQL.

-- name: schema
CREATE TABLE IF NOT EXISTS documents (
    id             TEXT    PRIMARY KEY,      -- the hub's id (used in URLs)
    document_id    TEXT    NOT NULL,         -- edXML DocumentId, date as yyyy/MM/dd (model.normal_document_id)
    sender         TEXT    NOT NULL,         -- From/OrganId = the authenticated agency
    doc_type       INTEGER NOT NULL,         -- BussinessDocType 0 new, 1 revoke, 2 update, 3 replace
    package_sha256 TEXT    NOT NULL,         -- as received (what the receipt names)
    forward_sha256 TEXT,                     -- the copy recipients get: + the hub's TraceHeader
    size           INTEGER NOT NULL,
    media_type     TEXT    NOT NULL,
    subject        TEXT    NOT NULL DEFAULT '',
    target         TEXT,                     -- revoke/update: the hub id of the document acted on
    replaced_by    TEXT,                     -- set on a document a later package replaced
    received_at    TEXT    NOT NULL,
    receipt        BLOB    NOT NULL,         -- the signed receipt, re-issued for duplicates
    meta           TEXT    NOT NULL,         -- JSON: attachments, signature report, PDF reports
    UNIQUE (sender, document_id, doc_type)
);
CREATE TABLE IF NOT EXISTS document_deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,   -- the inbox cursor
    document     TEXT    NOT NULL REFERENCES documents (id),
    recipient    TEXT    NOT NULL,
    mode         TEXT    NOT NULL CHECK (mode IN ('push', 'pull')),
    state        TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'acked')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    delivered_at TEXT,
    acked_at     TEXT,
    UNIQUE (document, recipient)
);
CREATE INDEX IF NOT EXISTS document_deliveries_inbox ON document_deliveries (recipient, seq);
CREATE TABLE IF NOT EXISTS document_statuses (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    document    TEXT    NOT NULL REFERENCES documents (id),
    recipient   TEXT    NOT NULL,
    code        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    staff       TEXT    NOT NULL DEFAULT '',
    at          TEXT    NOT NULL,            -- the status message's own Timestamp
    recorded_at TEXT    NOT NULL,
    message_sha256 TEXT                      -- the signed status message as received (a blob)
);
CREATE INDEX IF NOT EXISTS document_statuses_by_doc ON document_statuses (document, recipient, id);
-- One status message is recorded once per recipient (a retry is answered "repeated"). Stores from
-- before this key may hold a message twice (none on SQLite, whose one writer serialised the check
-- and the insert; PostgreSQL's concurrent units did not): the later copies go, the first stays.
-- Only while the key is missing, so that an open does not scan the table each time.
DELETE FROM document_statuses
WHERE id IN (SELECT later.id
             FROM document_statuses later
             JOIN document_statuses first
               ON first.document = later.document AND first.recipient = later.recipient
              AND first.message_sha256 = later.message_sha256 AND first.id < later.id
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_master
                               WHERE type = 'index' AND name = 'document_statuses_message'));
CREATE UNIQUE INDEX IF NOT EXISTS document_statuses_message
    ON document_statuses (document, recipient, message_sha256);

-- name: insert
INSERT INTO documents (id, document_id, sender, doc_type, package_sha256, forward_sha256, size,
                       media_type, subject, target, received_at, receipt, meta)
VALUES (:id, :document_id, :sender, :doc_type, :package_sha256, :forward_sha256, :size,
        :media_type, :subject, :target, :received_at, :receipt, :meta)
ON CONFLICT (sender, document_id, doc_type) DO NOTHING;

-- name: get
SELECT * FROM documents WHERE id = :id;

-- name: by_key
-- The documents that hold a package's DocumentId (in its normal form) for its kind: new (0) and
-- replacing (3) documents share one namespace (a replacement takes an id of its own), while a
-- revoke (1) or update (2) names its original's and so has one per kind. Oldest first: one,
-- unless a store from before this rule holds several.
SELECT * FROM documents
WHERE sender = :sender AND document_id = :document_id
  AND (doc_type = :doc_type OR (doc_type IN (0, 3) AND :doc_type IN (0, 3)))
ORDER BY received_at, id;

-- name: unfiled
-- Rows that may hold a DocumentId as an earlier version filed it, in the sender's spelling of its
-- date (30/10/2020, 2020/1/5): no ",yyyy/MM/dd," in it. DocumentHub.refile_document_ids looks closer.
SELECT id, sender, doc_type, document_id FROM documents
WHERE document_id NOT LIKE '%,____/__/__,%'
ORDER BY received_at, id;

-- name: refile
UPDATE documents SET document_id = :document_id WHERE id = :id AND document_id = :was;

-- name: originals
-- The documents a revoke/update/replace may act on: the sender's own, by DocumentId.
SELECT * FROM documents WHERE sender = :sender AND document_id = :document_id AND doc_type IN (0, 3)
ORDER BY received_at DESC LIMIT 1;

-- name: mark_replaced
UPDATE documents SET replaced_by = :by WHERE id = :id AND replaced_by IS NULL;

-- name: add_delivery
INSERT INTO document_deliveries (document, recipient, mode) VALUES (:document, :recipient, :mode)
ON CONFLICT (document, recipient) DO NOTHING;

-- name: delivery
SELECT * FROM document_deliveries WHERE document = :document AND recipient = :recipient;

-- name: lock_delivery
-- Taken before a unit reads a recipient's status history to add to it: two units adding to one
-- history then take turns (PostgreSQL: FOR UPDATE; SQLite's one writer takes turns already).
SELECT seq FROM document_deliveries WHERE document = :document AND recipient = :recipient;

-- name: deliveries
SELECT * FROM document_deliveries WHERE document = :document ORDER BY recipient;

-- name: mark_delivered
UPDATE document_deliveries SET state = 'delivered', delivered_at = :at
WHERE document = :document AND recipient = :recipient AND state = 'pending';

-- name: mark_acked
UPDATE document_deliveries
SET state = 'acked', acked_at = :at, delivered_at = COALESCE(delivered_at, :at)
WHERE document = :document AND recipient = :recipient AND state != 'acked';

-- name: delivery_failed
UPDATE document_deliveries SET attempts = attempts + 1, last_error = :error
WHERE document = :document AND recipient = :recipient;

-- name: inbox
-- At most :subject_chars characters of each Subject: one taken whole by an earlier version (up to
-- the 8 MiB envelope) made each page hundreds of megabytes.
SELECT d.seq, d.document AS id, doc.document_id, doc.sender, doc.received_at, doc.size,
       doc.doc_type, substr(doc.subject, 1, :subject_chars) AS subject, d.state
FROM document_deliveries d JOIN documents doc ON doc.id = d.document
WHERE d.recipient = :recipient AND d.seq > :after AND d.state != 'acked'
ORDER BY d.seq LIMIT :limit;

-- name: add_status
INSERT INTO document_statuses (document, recipient, code, description, staff, at, recorded_at,
                               message_sha256)
VALUES (:document, :recipient, :code, :description, :staff, :at, :recorded_at, :message_sha256);

-- name: history
SELECT recipient, code, description, staff, at, recorded_at, message_sha256
FROM document_statuses WHERE document = :document ORDER BY recipient, id;

-- name: recipient_history
SELECT code, message_sha256, at FROM document_statuses
WHERE document = :document AND recipient = :recipient ORDER BY id;

-- name: pushes_before
-- The push jobs (packages, status messages) queued before job :id and not finished (pending,
-- retrying, running; when each is due) about document :document or :root (the document it revokes or updates), or
-- about a revoke or update of either: gateway.exchange.delivery holds a push back while one of
-- them goes to the same agency. Read by state from the due index: it costs what is queued.
SELECT j.id, j.payload, j.state, j.run_after
FROM outbox_jobs j LEFT JOIN documents d ON d.id = j.document
WHERE j.state IN ('pending', 'running') AND j.id < :id
  AND j.kind IN ('document.push', 'document.status.push')
  AND (j.document IN (:document, :root) OR d.target IN (:document, :root))
ORDER BY j.id;

-- name: pushes_after
-- The push jobs queued after job :id (with their state) about the same documents as
-- pushes_before: a replayed dead push is not sent once one of them went to the same agency
-- (gateway.exchange.delivery). No filter on state here: with one, SQLite reads every done job
-- from the due index; without, it reads by primary key from :id on, the jobs queued since this
-- one (and the caller asks only for a job that has failed before).
SELECT j.id, j.payload, j.state
FROM outbox_jobs j LEFT JOIN documents d ON d.id = j.document
WHERE j.id > :id
  AND j.kind IN ('document.push', 'document.status.push')
  AND (j.document IN (:document, :root) OR d.target IN (:document, :root))
ORDER BY j.id;

-- name: pushes_due_now
-- The pushes waiting behind one about document :document or :root (see pushes_before), made due
-- now once it is done or dead: they wait for it without looking every half second.
UPDATE outbox_jobs SET run_after = :now
WHERE state = 'pending' AND run_after > :now
  AND kind IN ('document.push', 'document.status.push')
  AND (document IN (:document, :root)
       OR document IN (SELECT id FROM documents WHERE target IN (:document, :root)));

-- name: first
-- One document, found by its key's index: is its package in a blob folder (blobs.bind_to_store)?
SELECT id, package_sha256 FROM documents ORDER BY id LIMIT 1;

-- name: count_documents
SELECT id FROM documents;

-- name: count_document_deliveries
SELECT seq FROM document_deliveries;

-- name: count_document_statuses
SELECT id FROM document_statuses;

-- name: blob_named
-- Whether any row names the blob: a package, its forwarded copy, a status message, or anything
-- the row's meta holds (attachments, multipart parts) — a digest anywhere in it counts.
SELECT 1 AS named
WHERE EXISTS (SELECT 1 FROM documents
              WHERE package_sha256 = CAST(:sha256 AS TEXT)
                 OR forward_sha256 = CAST(:sha256 AS TEXT)
                 OR meta LIKE '%' || CAST(:sha256 AS TEXT) || '%')
   OR EXISTS (SELECT 1 FROM document_statuses WHERE message_sha256 = CAST(:sha256 AS TEXT));
