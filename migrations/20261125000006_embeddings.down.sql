DROP TABLE IF EXISTS chunk_embeddings;
