-- Chunks of parsed documents and their full-text index. The app segments the text
-- (jieba for Chinese) into space-separated tokens in `search_text`; the 'simple'
-- configuration then indexes those tokens as they are, so Chinese queries work on plain
-- PostgreSQL without any extension.

CREATE TABLE chunks (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    knowledge_base_id uuid        NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    knowledge_id      uuid        NOT NULL REFERENCES knowledge (id) ON DELETE CASCADE,
    parent_id         uuid        REFERENCES chunks (id) ON DELETE CASCADE,
    position          integer     NOT NULL CHECK (position >= 0),
    content           text        NOT NULL,
    search_text       text        NOT NULL DEFAULT '',
    search            tsvector    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, search_text)) STORED,
    start_offset      integer     NOT NULL DEFAULT 0,
    end_offset        integer     NOT NULL DEFAULT 0,
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chunks_knowledge_idx ON chunks (knowledge_id, position);
CREATE INDEX chunks_kb_idx ON chunks (knowledge_base_id);
CREATE INDEX chunks_parent_idx ON chunks (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX chunks_search_idx ON chunks USING gin (search);
