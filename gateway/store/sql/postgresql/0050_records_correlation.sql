-- The correlation id of the request, file or pull a record arrived with (gateway.observability):
-- it follows the record into its audit entries, its deliveries and the log lines about it.
-- Records stored before this migration have none.
ALTER TABLE records ADD COLUMN correlation_id TEXT;
