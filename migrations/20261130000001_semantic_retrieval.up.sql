-- Semantic retrieval. A knowledge base records the embedding model and vector size its
-- vectors were made with (a question is embedded with the same model, or refused); a
-- document says where its vectors stand; ingest jobs parse a document or embed its chunks.
ALTER TABLE knowledge_bases ADD COLUMN embedding_dimensions integer CHECK (embedding_dimensions > 0);

ALTER TABLE knowledge ADD COLUMN vector_status text NOT NULL DEFAULT 'none'
    CHECK (vector_status IN ('none', 'pending', 'processing', 'completed', 'failed'));
ALTER TABLE knowledge ADD COLUMN vector_error text;

ALTER TABLE ingest_jobs ADD COLUMN kind text NOT NULL DEFAULT 'parse' CHECK (kind IN ('parse', 'embed'));

-- Vectors of every size share one unsized column; each size in use gets its own partial
-- HNSW index over the column cast to that size (cosine distance). This one serves the
-- bundled embedder (multilingual-e5-small, 384); the app creates the index of any other
-- size when its first vectors are stored.
DO $migration$
BEGIN
    IF to_regclass('chunk_embeddings') IS NOT NULL THEN
        CREATE INDEX IF NOT EXISTS chunk_embeddings_hnsw_384 ON chunk_embeddings
            USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dimensions = 384;
    END IF;
END
$migration$;
