"""HTTP pieces the collector and the prediction service share: JSON error bodies, bounded request
bodies, app-state dependencies, the liveness probe, running a server in a child process, and a
lean HTTP/1.1 client for load generators."""
