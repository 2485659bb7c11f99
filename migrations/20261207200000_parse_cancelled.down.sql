-- A cancelled parse reads as a failed one, with the reason kept.
UPDATE knowledge SET parse_status = 'failed', error = coalesce(error, 'parse cancelled by the user')
    WHERE parse_status = 'cancelled';
ALTER TABLE knowledge DROP CONSTRAINT knowledge_parse_status_check;
ALTER TABLE knowledge ADD CONSTRAINT knowledge_parse_status_check
    CHECK (parse_status IN ('pending', 'processing', 'completed', 'failed'));
