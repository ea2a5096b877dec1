"""HTTP service: FastAPI app, schemas, settings, client and CLI."""
