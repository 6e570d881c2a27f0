"""Sources layer: reading the live SQL databases that tdsync catalogues (never writing them)."""
