"""Shell (HTTP): tdsync's HTTP API: FastAPI routes, Dataherald-compatible, over the store and the Dagster jobs."""
