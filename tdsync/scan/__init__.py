"""The scan (sync-schemas): what is in each table — columns, keys, DDL, categories, examples.

`runner.scan_tables` is the entry point; `reflect` reads structure, `sample` reads a bounded
sample of data, `merge` keeps people's work across re-scans and spots drift. The store
(tdsync/store/scans.py) holds the SYNCHRONIZING lifecycle; the Dagster job is tdsync/defs/scan_job.py.
"""

from tdsync.scan.model import ScanOptions, ScanTarget, TableScan
from tdsync.scan.runner import scan_tables

__all__ = ["ScanOptions", "ScanTarget", "TableScan", "scan_tables"]
