-- What upstream's clients read: a tenant's integer id (upstream's tenant_id is a number),
-- and a session's description and pin.
ALTER TABLE tenants ADD COLUMN number bigint GENERATED ALWAYS AS IDENTITY UNIQUE;
ALTER TABLE chat_sessions
    ADD COLUMN description text NOT NULL DEFAULT '',
    ADD COLUMN is_pinned boolean NOT NULL DEFAULT false,
    ADD COLUMN pinned_at timestamptz;
