"""Shell (HTTP): one router per resource: connections, table descriptions, scan, health."""
