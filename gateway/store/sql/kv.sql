-- A tiny table the store's own tests and health checks use, and the blob folder's mark
-- (gateway.exchange.blobs.bind_to_store).
-- name: schema
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);

-- name: put
INSERT INTO kv (k, v) VALUES (:k, :v) ON CONFLICT (k) DO UPDATE SET v = excluded.v;

-- name: add
-- The first value given stands (two gateways starting at once).
INSERT INTO kv (k, v) VALUES (:k, :v) ON CONFLICT (k) DO NOTHING;

-- name: get
SELECT v FROM kv WHERE k = :k;

-- name: count
SELECT count(*) AS n FROM kv;

-- name: delete
DELETE FROM kv WHERE k = :k;
