"""The next-item task (session-based recommendation): examples from the warehouse, the
recommenders (popularity, prod2vec kNN, a sequence model), their comparison, and their storage
in the model bundle."""
