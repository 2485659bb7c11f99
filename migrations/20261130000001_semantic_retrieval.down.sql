DO $migration$
DECLARE
    index_name text;
BEGIN
    FOR index_name IN SELECT indexname FROM pg_indexes WHERE indexname LIKE 'chunk_embeddings_hnsw_%' LOOP
        EXECUTE format('DROP INDEX %I', index_name);
    END LOOP;
END
$migration$;
ALTER TABLE ingest_jobs DROP COLUMN kind;
ALTER TABLE knowledge DROP COLUMN vector_error;
ALTER TABLE knowledge DROP COLUMN vector_status;
ALTER TABLE knowledge_bases DROP COLUMN embedding_dimensions;
