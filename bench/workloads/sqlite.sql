-- sqlite workload: build and index a 200k-row table in :memory:, then query, sort, reindex.
PRAGMA cache_size = -200000;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL, note TEXT);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200000)
INSERT INTO t SELECT i, printf('name-%08d', (i * 7919) % 200003), i % 97, (i * 31 % 1000) / 7.0,
  substr('lorem ipsum dolor sit amet consectetur adipiscing elit', 1 + i % 20, 10 + i % 30) FROM c;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_grp_val ON t(grp, val);
SELECT count(*), sum(length(name)) FROM t;
SELECT grp, count(*), round(avg(val), 3) FROM t GROUP BY grp ORDER BY grp LIMIT 5;
SELECT count(*) FROM t a JOIN t b ON a.name = b.name WHERE a.grp < 10;
UPDATE t SET note = note || '-x' WHERE grp % 3 = 0;
DELETE FROM t WHERE grp % 5 = 0;
SELECT count(*), max(name) FROM t;
CREATE INDEX t_note ON t(note, name);
CREATE TABLE u AS SELECT name || '/' || note AS k, grp, val FROM t ORDER BY note DESC, name;
CREATE INDEX u_k ON u(k);
SELECT count(DISTINCT k), count(DISTINCT note) FROM u JOIN t USING (grp, val) WHERE t.id % 1000 = 0;
SELECT grp, group_concat(substr(name, 6, 3), ',') IS NOT NULL FROM t GROUP BY grp ORDER BY 1 LIMIT 3;
REINDEX;
SELECT count(*) FROM u WHERE k LIKE 'name-0001%';
