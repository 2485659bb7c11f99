-- Chat sessions and their messages; an answer keeps the chunks it was built from.

CREATE TABLE chat_sessions (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    knowledge_base_id uuid        REFERENCES knowledge_bases (id) ON DELETE SET NULL,
    title             text        NOT NULL DEFAULT '',
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_sessions_tenant_idx ON chat_sessions (tenant_id, updated_at DESC);
CREATE TRIGGER chat_sessions_updated_at BEFORE UPDATE ON chat_sessions
    FOR EACH ROW EXECUTE FUNCTION weknora_set_updated_at();

CREATE TABLE chat_messages (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id  uuid        NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role        text        NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content     text        NOT NULL,
    -- The retrieved chunks an answer cites: [{"chunk_id": ..., "score": ...}].
    sources     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    request_id  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_messages_session_idx ON chat_messages (session_id, created_at);
