"""The durable part of the data path, one subpackage per idea: `synth` (the generator and its
oracle), `sources` (source format adapters), `land` (atomic landing, the manifest, load reports)
and `log` (the durable append log and its exactly-once compaction)."""
