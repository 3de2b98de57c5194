"""Landing canonical rows as Parquet: atomic writers, source loads, the manifest, load reports."""
