"""The durable append log (a write-ahead log of segments) and its exactly-once compaction into
landing Parquet, shared by the collector's events and the prediction service's predictions."""
