"""Shell (CLI): `tdsync ...` commands, the dev environment and the demo; thin over the services
and the Dagster runs (tdsync.defs.runs).
"""
