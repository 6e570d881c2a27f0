"""Shell (Dagster): the tags tdsync puts on its runs, and the names of what starts them.

Every run of tdsync's jobs is tagged with its connection's id (run lists filter by it, the run
queue allows one run per connection by it, the run-failure sensor settles its rows by it) and with
what started it: `ui` (the jobs' default), `schedule`, `sensor`, `cli` or `webhook` (the API).
"""

CONNECTION_TAG = "tdsync/db_connection_id"
TRIGGER_TAG = "tdsync/trigger"

# The trigger of runs the API starts.
WEBHOOK_TRIGGER = "webhook"
