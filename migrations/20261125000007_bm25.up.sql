-- ParadeDB's BM25 index over the segmented chunk text, only where the server offers
-- pg_search (production's ParadeDB image). Elsewhere the app ranks with PostgreSQL's
-- built-in full-text search over chunks.search.
DO $migration$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_search') THEN
        RAISE NOTICE 'pg_search is not available on this server: no BM25 index (built-in full-text search)';
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_search;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'pg_search is available but this role may not create it: ask an administrator for CREATE EXTENSION pg_search (see docs/operations.md)';
        RETURN;
    END;
    EXECUTE $ddl$CREATE INDEX chunks_bm25_idx ON chunks USING bm25 (id, search_text) WITH (key_field = 'id')$ddl$;
END
$migration$;
