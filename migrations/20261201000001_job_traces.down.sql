ALTER TABLE ingest_jobs DROP COLUMN traceparent;
