-- A tenant's settings under upstream's `/tenants/kv/{key}` names (retrieval-config,
-- conversation-config): one JSON object per tenant and key, gone with the tenant.
CREATE TABLE tenant_settings (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key        text        NOT NULL CHECK (key ~ '^[a-z][a-z-]{0,63}$'),
    value      jsonb       NOT NULL CHECK (jsonb_typeof(value) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE TRIGGER tenant_settings_updated_at BEFORE UPDATE ON tenant_settings
    FOR EACH ROW EXECUTE FUNCTION weknora_set_updated_at();
