-- The backups the operator took (`cargo xtask backup`) and the drills that verified them
-- (`backup verify`), so the app can report the last good backup in /metrics and an alert
-- can fire when backups stop. Written by the operator only.
CREATE TABLE backup_runs (
    id          bigserial   PRIMARY KEY,
    -- archive: a backup archive; base: a base backup for point-in-time recovery
    kind        text        NOT NULL CHECK (kind IN ('archive', 'base')),
    name        text        NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    verified_at timestamptz
);
CREATE INDEX backup_runs_kind_finished ON backup_runs (kind, finished_at DESC);
