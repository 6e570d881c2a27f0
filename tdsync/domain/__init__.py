"""Domain layer: what tdsync's catalogue is and the rules it follows, with no I/O.

Models and error codes (SPEC.md), the refresh rules (stored + live -> plan), the scan's model and
rules (changed-only, schema merge), limits on people's text, cron schedules, the JSON encoding of
descriptions. Imports nothing of tdsync's outside this folder.
"""
