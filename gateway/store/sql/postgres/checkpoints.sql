-- PostgreSQL versions of blocks in ../checkpoints.sql (see audit.sql here for the "base:" lines).

-- name: schema
-- base: bc21b865b9543ded
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size         BIGINT  PRIMARY KEY,
    root         BYTEA   NOT NULL,
    at           TEXT    NOT NULL,
    note         BYTEA   NOT NULL,
    signer_chain TEXT    NOT NULL,
    timestamp    BYTEA   NOT NULL
);
