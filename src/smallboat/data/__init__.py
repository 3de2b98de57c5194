"""The durable part of the data path: generator, source adapters and landing."""
