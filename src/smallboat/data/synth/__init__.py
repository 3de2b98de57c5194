"""The synthetic release: generator, session dynamics, catalog, exact purchase oracle, the
release's figures, and the demo's hold-out split."""
