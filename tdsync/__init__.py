"""tdsync: keeps a MongoDB catalogue of table descriptions in sync with live SQL databases."""

__version__ = "0.1.0"
