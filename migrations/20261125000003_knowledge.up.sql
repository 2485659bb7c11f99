-- Knowledge items (documents) and the ingest jobs that parse them. A job's state lives
-- here, so a crash loses nothing: unfinished jobs are claimed again once their lease ends.

CREATE TABLE knowledge (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    knowledge_base_id uuid        NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    source_type       text        NOT NULL CHECK (source_type IN ('file', 'url', 'manual')),
    -- The uploaded file's name, the URL, or a label for manual text.
    source            text        NOT NULL,
    title             text        NOT NULL DEFAULT '',
    file_type         text        NOT NULL DEFAULT '',
    -- Where the original bytes are in object storage (local volume, MinIO or S3).
    object_key        text,
    size_bytes        bigint      NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    -- Hex SHA-256 of the original bytes: finds duplicates, proves a restore intact.
    checksum          text        CHECK (checksum ~ '^[0-9a-f]{64}$'),
    parse_status      text        NOT NULL DEFAULT 'pending'
                                  CHECK (parse_status IN ('pending', 'processing', 'completed', 'failed')),
    error             text,
    chunk_count       integer     NOT NULL DEFAULT 0,
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    processed_at      timestamptz
);
CREATE INDEX knowledge_kb_idx ON knowledge (knowledge_base_id, created_at DESC);
CREATE INDEX knowledge_tenant_idx ON knowledge (tenant_id);
CREATE INDEX knowledge_checksum_idx ON knowledge (knowledge_base_id, checksum) WHERE checksum IS NOT NULL;
CREATE TRIGGER knowledge_updated_at BEFORE UPDATE ON knowledge
    FOR EACH ROW EXECUTE FUNCTION weknora_set_updated_at();

CREATE TABLE ingest_jobs (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    knowledge_id     uuid        NOT NULL REFERENCES knowledge (id) ON DELETE CASCADE,
    state            text        NOT NULL DEFAULT 'queued'
                                 CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer     NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- Which worker holds the job, and until when; an expired lease means the worker died.
    lease_owner      text,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CONSTRAINT ingest_jobs_lease_complete CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
-- The claim query scans only live jobs, in due order.
CREATE INDEX ingest_jobs_claim_idx ON ingest_jobs (next_attempt_at) WHERE state IN ('queued', 'running');
CREATE INDEX ingest_jobs_knowledge_idx ON ingest_jobs (knowledge_id);
CREATE TRIGGER ingest_jobs_updated_at BEFORE UPDATE ON ingest_jobs
    FOR EACH ROW EXECUTE FUNCTION weknora_set_updated_at();
