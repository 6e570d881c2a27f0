"""Shell (Dagster): the jobs, asset, checks, schedules, sensors and resources of the code location,
and tdsync.defs.runs, which starts runs of it for the API and the CLI.
"""
