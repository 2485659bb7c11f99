DROP TABLE IF EXISTS backup_runs;
