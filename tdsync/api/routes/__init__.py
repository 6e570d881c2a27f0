"""One router per resource: connections, table descriptions, scan, health."""
