DROP INDEX IF EXISTS chunks_bm25_idx;
