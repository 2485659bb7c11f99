-- What upstream's clients read: tenants' and API keys' integer ids (upstream's are numbers),
-- a session's description and pin, and a knowledge base's pin.
ALTER TABLE tenants ADD COLUMN number bigint GENERATED ALWAYS AS IDENTITY UNIQUE;
ALTER TABLE api_keys ADD COLUMN number bigint GENERATED ALWAYS AS IDENTITY UNIQUE;
ALTER TABLE chat_sessions
    ADD COLUMN description text NOT NULL DEFAULT '',
    ADD COLUMN is_pinned boolean NOT NULL DEFAULT false,
    ADD COLUMN pinned_at timestamptz;
ALTER TABLE knowledge_bases
    ADD COLUMN is_pinned boolean NOT NULL DEFAULT false,
    ADD COLUMN pinned_at timestamptz;
