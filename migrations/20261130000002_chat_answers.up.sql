-- Chat answers: how each answer ended, what made it and how long it took; the tenant's own
-- models (their API keys encrypted by the app, never in clear); a knowledge base's chat model.

ALTER TABLE chat_messages
    ADD COLUMN status         text    NOT NULL DEFAULT 'completed'
        CHECK (status IN ('streaming', 'completed', 'stopped', 'failed')),
    ADD COLUMN answer_kind    text    CHECK (answer_kind IN ('model', 'extractive')),
    ADD COLUMN model          text,
    ADD COLUMN error          text,
    ADD COLUMN first_token_ms integer,
    ADD COLUMN duration_ms    integer;

CREATE TABLE models (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The model's name at its provider (e.g. gpt-4o-mini, qwen2.5:7b).
    name              text        NOT NULL CHECK (name <> ''),
    type              text        NOT NULL CHECK (type IN ('chat', 'embedding')),
    source            text        NOT NULL DEFAULT 'remote',
    description       text        NOT NULL DEFAULT '',
    provider          text        NOT NULL,
    base_url          text        NOT NULL,
    -- AES-256-GCM: 12-byte nonce, then the ciphertext and its tag (key: MODELS_ENCRYPTION_KEY).
    api_key_encrypted bytea,
    dimensions        integer     CHECK (dimensions > 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX models_tenant_idx ON models (tenant_id, created_at);
CREATE TRIGGER models_updated_at BEFORE UPDATE ON models
    FOR EACH ROW EXECUTE FUNCTION weknora_set_updated_at();

-- A knowledge base's own models (upstream's names): the chat model its questions are
-- answered with, the embedding model its vectors are made with (NULL: the built-in ones).
ALTER TABLE knowledge_bases
    ADD COLUMN summary_model_id   uuid REFERENCES models (id) ON DELETE SET NULL,
    ADD COLUMN embedding_model_id uuid REFERENCES models (id) ON DELETE SET NULL;
