-- look a random row up by both blind indexes; check_lookup() raises PK001 unless the
-- row is found and every row found decrypts to its shadow value
SELECT last_value AS maxid FROM secret_ids \gset
\set id random(1, :maxid)
SELECT check_lookup(:id);
