"""Sources layer: everything that talks to the SQL databases being catalogued (never writing them).

Engines (with their timeouts and SSH tunnels), the live listing, fingerprints, reflection, DDL,
sampling and the scan of a batch of tables. Imports the config and domain layers only, never the store.
"""
