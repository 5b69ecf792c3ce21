-- The PostgreSQL sink's index, chosen by measurement: a day's partition of 2,000,000 events of
-- 20,000 viewers arriving in ts order, with the primary key's B-tree against BRIN on
-- (user_id, ts), then one viewer's newest 100 (BENCHMARKS.md, "Why hybrid?").
--   psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE pp_idx'
--   psql -h 127.0.0.1 -U postgres -d pp_idx -f bench/postgres/history_index.sql
\timing on
DROP TABLE IF EXISTS ev_btree, ev_brin;
CREATE TABLE ev_btree (user_id bigint NOT NULL, day int NOT NULL, ts bigint NOT NULL, event_id uuid NOT NULL, payload text, PRIMARY KEY (user_id, day, ts, event_id));
CREATE TABLE ev_brin (user_id bigint NOT NULL, day int NOT NULL, ts bigint NOT NULL, event_id uuid NOT NULL, payload text);
CREATE INDEX ev_brin_idx ON ev_brin USING brin (user_id, ts);
-- 2,000,000 events of 20,000 viewers arriving in ts order, as a day's partition fills
INSERT INTO ev_btree SELECT (i * 7919) % 20000, 20400, 1762560000000 + i * 40, md5(i::text)::uuid, repeat('x', 120) FROM generate_series(1::bigint, 2000000::bigint) i;
INSERT INTO ev_brin SELECT (i * 7919) % 20000, 20400, 1762560000000 + i * 40, md5(i::text)::uuid, repeat('x', 120) FROM generate_series(1::bigint, 2000000::bigint) i;
VACUUM ANALYZE ev_btree; VACUUM ANALYZE ev_brin;
SELECT 'btree' AS layout, pg_size_pretty(pg_total_relation_size('ev_btree')) AS total, pg_size_pretty(pg_indexes_size('ev_btree')) AS indexes
UNION ALL SELECT 'brin', pg_size_pretty(pg_total_relation_size('ev_brin')), pg_size_pretty(pg_indexes_size('ev_brin'));
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM ev_btree WHERE user_id = 4242 AND day = 20400 ORDER BY ts DESC, event_id DESC LIMIT 100;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM ev_brin WHERE user_id = 4242 AND day = 20400 ORDER BY ts DESC, event_id DESC LIMIT 100;
