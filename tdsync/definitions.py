"""The Dagster code location: everything under tdsync/defs, bound to tdsync's resources."""

from __future__ import annotations

import dagster as dg

import tdsync.defs
from tdsync.defs.resources import default_resources
from tdsync.deployment import executor


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.components.load_defs(tdsync.defs),
        dg.Definitions(resources=default_resources(), executor=executor()),
    )
