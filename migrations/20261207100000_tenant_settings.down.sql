DROP TABLE IF EXISTS tenant_settings;
