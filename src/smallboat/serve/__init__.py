"""The prediction service: FastAPI app, session store, micro-batched scoring."""
