-- Upstream's folders, and its moves and copies of documents between knowledge bases.
-- A document's folder is its `folder_path` ('' is the knowledge base's root; 'docs/spec' a
-- folder in a folder). A move or a copy is a task that a worker of any replica carries out
-- under a lease, one document at a time; each document done is an item written in the same
-- transaction as the work, so a retried task never does a document twice.
ALTER TABLE knowledge ADD COLUMN folder_path text NOT NULL DEFAULT '' CHECK (length(folder_path) <= 1024);
CREATE INDEX knowledge_folder_idx ON knowledge (knowledge_base_id, folder_path);

CREATE TABLE transfer_tasks (
    tenant_id        uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The task id the client polls (upstream's are strings; a copy may name its own).
    id               text        NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    kind             text        NOT NULL CHECK (kind IN ('move', 'copy')),
    -- No foreign keys: a task's progress stays readable after its knowledge bases are gone.
    source_kb_id     uuid        NOT NULL,
    -- A copy into a new knowledge base has none until the worker creates it.
    target_kb_id     uuid,
    -- A move: the documents asked for. A copy: the source's documents to copy, fixed when
    -- the copy starts (NULL before).
    knowledge_ids    uuid[],
    -- A move's mode: reuse_vectors or reparse.
    mode             text        NOT NULL DEFAULT '' CHECK (mode IN ('', 'reuse_vectors', 'reparse')),
    -- What a new knowledge base of a copy is named after its source's name ("Copy", "副本").
    copy_suffix      text        NOT NULL DEFAULT 'Copy',
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    message          text        NOT NULL DEFAULT '',
    error            text        NOT NULL DEFAULT '',
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer     NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT transfer_tasks_lease_complete CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX transfer_tasks_claim_idx ON transfer_tasks (next_attempt_at) WHERE status IN ('pending', 'processing');
CREATE TRIGGER transfer_tasks_updated_at BEFORE UPDATE ON transfer_tasks
    FOR EACH ROW EXECUTE FUNCTION weknora_set_updated_at();

CREATE TABLE transfer_task_items (
    tenant_id    uuid NOT NULL,
    task_id      text NOT NULL,
    -- The document moved, or the source's document copied.
    knowledge_id uuid NOT NULL,
    -- A copy's new document.
    copy_id      uuid,
    failed       boolean NOT NULL DEFAULT false,
    -- Why it failed, or what else happened (its vectors are made again).
    note         text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, task_id, knowledge_id),
    FOREIGN KEY (tenant_id, task_id) REFERENCES transfer_tasks (tenant_id, id) ON DELETE CASCADE
);
