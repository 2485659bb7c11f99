DROP TABLE IF EXISTS api_keys;
DROP TABLE IF EXISTS tenants;
DROP FUNCTION IF EXISTS weknora_set_updated_at();
