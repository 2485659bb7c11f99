DROP TABLE IF EXISTS transfer_task_items;
DROP TABLE IF EXISTS transfer_tasks;
DROP INDEX IF EXISTS knowledge_folder_idx;
ALTER TABLE knowledge DROP COLUMN IF EXISTS folder_path;
