DROP TABLE IF EXISTS message_suggestion_events;
DROP TABLE IF EXISTS message_suggestion_sets;
