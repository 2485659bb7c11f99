-- Knowledge bases: a tenant's collections of documents, each with its own chunking and
-- retrieval settings (defaults match config/config.yaml: chunk_size 512, overlap 50).

CREATE TABLE knowledge_bases (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name               text        NOT NULL CHECK (length(btrim(name)) > 0),
    description        text        NOT NULL DEFAULT '',
    chunk_size         integer     NOT NULL DEFAULT 512 CHECK (chunk_size BETWEEN 16 AND 65536),
    chunk_overlap      integer     NOT NULL DEFAULT 50 CHECK (chunk_overlap >= 0),
    split_markers      text[]      NOT NULL DEFAULT ARRAY[E'\n\n', E'\n', '。', '！', '？', '. ', '! ', '? ', '；', '; '],
    retrieval_top_k    integer     NOT NULL DEFAULT 10 CHECK (retrieval_top_k BETWEEN 1 AND 200),
    keyword_threshold  real        NOT NULL DEFAULT 0 CHECK (keyword_threshold >= 0),
    vector_threshold   real        NOT NULL DEFAULT 0.5 CHECK (vector_threshold BETWEEN 0 AND 1),
    embedding_model    text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT knowledge_bases_overlap_below_size CHECK (chunk_overlap < chunk_size),
    CONSTRAINT knowledge_bases_tenant_name_key UNIQUE (tenant_id, name)
);
CREATE TRIGGER knowledge_bases_updated_at BEFORE UPDATE ON knowledge_bases
    FOR EACH ROW EXECUTE FUNCTION weknora_set_updated_at();
