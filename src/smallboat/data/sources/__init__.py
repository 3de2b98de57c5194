"""Source adapters: map a source format onto the canonical tables (smallboat.schema)."""
