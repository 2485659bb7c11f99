-- A job carries the W3C traceparent of the request (or the job) that queued it, so that
-- the work it does joins that request's trace.
ALTER TABLE ingest_jobs ADD COLUMN traceparent text;
