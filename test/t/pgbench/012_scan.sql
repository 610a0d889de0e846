-- decrypt a random range of 50 rows; check_range() raises PK002 on any difference from the shadow
SELECT last_value AS maxid FROM secret_ids \gset
\set lo random(1, :maxid)
SELECT check_range(:lo, 50);
