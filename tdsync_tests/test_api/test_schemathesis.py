"""Property-based run of schemathesis over /openapi.json of a real `tdsync api` process.

Bounded: 200 generated requests in all (TDSYNC_FUZZ_CASES; `make fuzz` runs 1,000), shared out
over the operations (valid and invalid inputs alternately). Every check schemathesis runs by default must hold: no 5xx, documented
status codes and content types, responses that match the schema, invalid data rejected.

(schemathesis' lazy pytest fixture does not work with pytest 9, so the operations are driven
through its Python API with Hypothesis directly.)
"""

from __future__ import annotations

import math
import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tdsync_tests.test_api.live import ApiProcess

TOTAL_CASES = int(os.environ.get("TDSYNC_FUZZ_CASES") or 200)
# Fields whose validity JSON Schema cannot state: cron strings, free-form metadata that must
# still fit in BSON (no `$` keys, 64-bit integers, 256 KiB), a description's columns, each named
# once (uniqueItems cannot say "unique by name"), and aliases (no control or invisible characters,
# not blank once NFKC-normalised and trimmed). A schema-valid value there may be a 422.
SEMANTIC_FIELDS = (
    ["body", "refresh_schedule"],
    ["body", "scan_schedule"],
    ["body", "metadata"],
    ["body", "columns"],
    ["body", "alias"],
    ["body", "examples"],  # keys MongoDB cannot store (a leading `$`, NUL), like metadata's
)
# Schemathesis' default, plus 400: SPEC's answer for a well-formed connection that cannot work
# (unknown dialect, unreachable host), which no JSON schema can tell apart in advance.
ACCEPTED_STATUSES = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_STATUSES}}}
)


def schema_valid_data_is_accepted(ctx, response, case) -> bool | None:
    """schemathesis' positive_data_acceptance, except for a 422 about SEMANTIC_FIELDS alone."""
    if response.status_code == 422:
        problems = response.json().get("detail") or []
        # A list body's items are numbered: `body.2.metadata` is the field `body.metadata`.
        fields = [[part for part in p.get("loc") if not part.isdigit()][:2] for p in problems]
        if problems and all(field in SEMANTIC_FIELDS for field in fields):
            return None
    return positive_data_acceptance(ctx, response, case)


def test_every_operation_honours_its_openapi_contract(live_api: ApiProcess):
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json", config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    modes = list(GenerationMode)
    # Operations without inputs have a single request to make: run first, what they leave of
    # the budget goes to the others.
    operations.sort(key=lambda op: len(list(op.iter_parameters())) + len(op.body))
    planned = [(operation, mode) for operation in operations for mode in modes]
    failures: dict[str, str] = {}
    cases = 0

    for done, (operation, mode) in enumerate(planned):
        per_run = max(1, math.ceil((TOTAL_CASES - cases) / (len(planned) - done)))

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=per_run,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def honours_contract(case) -> None:
            nonlocal cases
            cases += 1
            case.call_and_validate(
                base_url=live_api.url,
                timeout=30,
                excluded_checks=[positive_data_acceptance],
                additional_checks=[schema_valid_data_is_accepted],
            )

        try:
            honours_contract()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing invalid to send (no inputs)
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures
            failures[f"{operation.label} ({mode.value})"] = str(exc)[:2000]

    assert not failures, "\n\n".join(f"{label}: {error}" for label, error in failures.items())
    print(f"schemathesis: {cases} cases over {len(operations)} operations")
    # Hypothesis may run a few more than asked, or fewer where a strategy runs out of inputs.
    assert TOTAL_CASES * 0.95 <= cases <= TOTAL_CASES + len(planned)
