"""Each module says which layer it is in (README, "How it works"); import-linter checks the import
directions between the layers (`lint-imports`, run first by `make test` and `make test-fast`)."""

import ast
from pathlib import Path

import tdsync

PACKAGE = Path(tdsync.__file__).parent
LAYERS = {
    "domain": "Domain layer",
    "config": "Config layer",
    "sources": "Sources layer",
    "store": "Store layer",
    "services": "Services layer",
    "defs": "Shell (Dagster)",
    "api": "Shell (HTTP)",
    "cli": "Shell (CLI)",
}


def test_every_module_is_in_a_layer_folder_and_its_docstring_names_the_layer() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) == 1:  # tdsync/__init__.py and the code location on top
            assert relative.name in {"__init__.py", "definitions.py"}, relative
            continue
        layer = LAYERS[relative.parts[0]]
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not docstring.startswith(layer):
            wrong.append(f"{relative}: {docstring[:60]!r}")
    assert wrong == [], f"modules whose docstring does not start with their layer: {wrong}"
