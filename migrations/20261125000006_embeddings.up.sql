-- Vector embeddings of chunks, only where the server offers pgvector (production's
-- ParadeDB and the local PostgreSQL 17 image do; plain or managed PostgreSQL may not).
-- Without it, or without the right to create it, this migration records itself and
-- changes nothing: the app then retrieves by keyword only. The extension is left in place
-- by the down migration: other databases on the server may use it.
DO $migration$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        RAISE NOTICE 'pgvector is not available on this server: no chunk_embeddings (keyword retrieval only)';
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS vector;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'pgvector is available but this role may not create it: ask an administrator for CREATE EXTENSION vector (see docs/operations.md)';
        RETURN;
    END;
    -- Dimensions vary by embedding model, so the column is unsized and each row says its own.
    CREATE TABLE chunk_embeddings (
        chunk_id          uuid        PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
        knowledge_base_id uuid        NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
        model             text        NOT NULL,
        dimensions        integer     NOT NULL CHECK (dimensions > 0),
        embedding         vector      NOT NULL,
        created_at        timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT chunk_embeddings_dimensions CHECK (vector_dims(embedding) = dimensions)
    );
    CREATE INDEX chunk_embeddings_kb_idx ON chunk_embeddings (knowledge_base_id, model);
END
$migration$;
