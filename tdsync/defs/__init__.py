"""Dagster definitions of tdsync, one small module per kind (resources, jobs, schedules, sensors)."""
