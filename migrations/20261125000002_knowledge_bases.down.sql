DROP TABLE IF EXISTS knowledge_bases;
