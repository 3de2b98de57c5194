"""Event collection: pixel, JSON and Segment-compatible endpoints on a durable write-ahead log.

`app` is the FastAPI application, `store` the write path (session assignment, group-committed
log, background compaction), `protocols` maps each wire format onto canonical hits, `compaction`
lands closed log segments in `landing/browsing_events/` exactly once, and `replay` streams a
browsing file to a collector. See docs/collect.md.
"""
