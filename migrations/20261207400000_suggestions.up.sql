-- Follow-up questions suggested after an answer (upstream's message suggestions): one set
-- per answer, replaced when regenerated, and what readers did with them.
CREATE TABLE message_suggestion_sets (
    id                   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session_id           uuid        NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    assistant_message_id uuid        NOT NULL UNIQUE REFERENCES chat_messages (id) ON DELETE CASCADE,
    status               text        NOT NULL CHECK (status IN ('ready', 'suppressed', 'failed')),
    suppression_reason   text        NOT NULL DEFAULT '',
    -- [{"id", "text", "source"}]
    questions            jsonb       NOT NULL DEFAULT '[]'::jsonb,
    model                text        NOT NULL DEFAULT '',
    error                text        NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_suggestion_sets_session_idx ON message_suggestion_sets (session_id);

CREATE TABLE message_suggestion_events (
    id                bigserial   PRIMARY KEY,
    tenant_id         uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    suggestion_set_id uuid        NOT NULL REFERENCES message_suggestion_sets (id) ON DELETE CASCADE,
    question_id       text        NOT NULL DEFAULT '',
    event_type        text        NOT NULL CHECK (event_type IN ('impression', 'click', 'dismiss', 'regenerate')),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_suggestion_events_set_idx ON message_suggestion_events (suggestion_set_id);
