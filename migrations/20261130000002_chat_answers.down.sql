ALTER TABLE knowledge_bases DROP COLUMN summary_model_id, DROP COLUMN embedding_model_id;
DROP TABLE models;
ALTER TABLE chat_messages
    DROP COLUMN status,
    DROP COLUMN answer_kind,
    DROP COLUMN model,
    DROP COLUMN error,
    DROP COLUMN first_token_ms,
    DROP COLUMN duration_ms;
