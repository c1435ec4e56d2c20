-- A tiny table the store's own tests and health checks use.
-- name: schema
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);

-- name: put
INSERT INTO kv (k, v) VALUES (:k, :v) ON CONFLICT (k) DO UPDATE SET v = excluded.v;

-- name: get
SELECT v FROM kv WHERE k = :k;

-- name: count
SELECT count(*) AS n FROM kv;
