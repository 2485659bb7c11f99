-- Upstream's `cancelled` parse status: a parse the user stopped (POST
-- /api/v1/knowledge/{id}/cancel-parse). The document keeps the chunks it had; a reparse
-- parses it again.
ALTER TABLE knowledge DROP CONSTRAINT knowledge_parse_status_check;
ALTER TABLE knowledge ADD CONSTRAINT knowledge_parse_status_check
    CHECK (parse_status IN ('pending', 'processing', 'completed', 'failed', 'cancelled'));
