-- many keys: one per tenant, chosen per row; a bounded LRU cache; crypto-shredding
\set VERBOSITY default
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
-- 10,000 named keys
SELECT count(kms_create_key('tenant_' || t, 'local:tenants')) AS keys_created FROM generate_series(1, 10000) t;
SELECT count(DISTINCT key_name) AS tenant_keys FROM kms_keys WHERE key_name LIKE 'tenant\_%';
-- a key chosen per row, with a cache bounded far below the number of keys
SET pgcrypt_kms.cache_max_keys = 500;
SELECT kms_flush_cache();
CREATE TABLE tenant_data AS
SELECT g AS id, g % 10000 + 1 AS tenant_id, 'secret of row ' || g AS plain,
       kms_encrypt('secret of row ' || g, 'tenant_' || (g % 10000 + 1)) AS v
  FROM generate_series(1, 20000) g;
SELECT count(*) FILTER (WHERE kms_decrypt(v) = plain) AS mixed_table_decrypts FROM tenant_data;
SELECT cached_versions <= 500 AS cache_bounded, evictions > 10000 AS evictions_counted FROM kms_cache_stats();
-- each value names its own key version, so a mixed table needs no key column
SELECT kms_decrypt(v) = plain AS each_value_names_its_own_key FROM tenant_data WHERE id = 1;
RESET pgcrypt_kms.cache_max_keys;

-- crypto-shredding: the confirmation must repeat the name
SELECT kms_destroy_key('tenant_42', 'tenant_24');
SELECT kms_destroy_key('tenant_42', 'tenant_42') AS versions_destroyed;
SELECT kms_decrypt(v) FROM tenant_data WHERE tenant_id = 42 LIMIT 1;
SELECT kms_encrypt('x', 'tenant_42');
SELECT pg_temp.sqlstate_of($$SELECT kms_rotate_key('tenant_42')$$) AS rotate_destroyed,
       pg_temp.sqlstate_of($$SELECT kms_destroy_key('tenant_42', 'tenant_42')$$) AS destroy_again,
       pg_temp.sqlstate_of($$SELECT kms_rewrap_key('tenant_42', 'local:other')$$) AS rewrap_destroyed;
-- nothing that could decrypt is left in the keyring: a dump carries the tombstones only
SELECT key_name, version, state, wrapped_dek IS NULL AS wrapped_key_deleted FROM pgcrypt_kms.key_versions WHERE key_name = 'tenant_42';
SELECT destroyed IS NOT NULL AS marked_destroyed, index_key_wrapped IS NULL AS no_index_key FROM pgcrypt_kms.keys WHERE key_name = 'tenant_42';
SELECT decrypted, failed, error FROM kms_verify('tenant_data', 'v') WHERE failed > 0;
-- every other tenant is untouched
SELECT count(*) FILTER (WHERE kms_decrypt(v) = plain) AS other_tenants_decrypt FROM tenant_data WHERE tenant_id <> 42;
DROP TABLE tenant_data;
