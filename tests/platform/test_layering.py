"""The house rules of the code base, checked on the source (AST, not text search where it matters):
pure layers never import Dagster, settings classes live in ``resources/``, pandera models in
``alloc_assets/schemas/``, modules stay small, the regime order has one home, and comments explain
the code instead of pointing at history a reader cannot follow."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "alloc_assets"
PURE = ("core", "sim", "store")
MAX_LINES = 500
REGIME_NAMES = {"normal", "elevated", "stress", "crisis"}


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


#: Who may import whom: the pure math (core, sim) imports neither Dagster nor anything above it;
#: store (warehouse reads and writes) may use the warehouse resource's class; resources may use the
#: pure cores' types; only defs imports everything.
FORBIDDEN = {
    "core": ("dagster", "resources", "alloc_assets.defs", "alloc_assets.store", "alloc_assets.sim"),
    "sim": ("dagster", "resources", "alloc_assets.defs", "alloc_assets.store"),
    "store": ("dagster", "alloc_assets.defs"),
}


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_import_neither_dagster_nor_the_layers_above(layer):
    offenders = {}
    for path in _modules(PACKAGE / layer):
        bad = sorted(m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN[layer]))
        if bad:
            offenders[str(path.relative_to(REPO))] = bad
    assert not offenders, offenders


def test_resources_do_not_import_the_dagster_layer():
    offenders = {str(p.relative_to(REPO)): sorted(m for m in _imports(p) if m.startswith(("alloc_assets.defs", "alloc_assets.store")))
                 for p in _modules(REPO / "resources")}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def _class_bases(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            out.append((node.name, [ast.unparse(b) for b in node.bases]))
    return out


def test_no_settings_class_is_defined_in_the_dagster_layer():
    found = [(str(p.relative_to(REPO)), name) for p in _modules(PACKAGE / "defs") for name, bases in _class_bases(p)
             if any(b.endswith(("ConfigurableResource", "Config")) for b in bases)]
    assert not found, found


def test_every_pandera_model_lives_in_schemas():
    found = [(str(p.relative_to(REPO)), name) for p in _modules(PACKAGE) for name, bases in _class_bases(p)
             if any(b.endswith("DataFrameModel") for b in bases) and "schemas" not in p.relative_to(PACKAGE).parts]
    assert not found, found


def test_no_module_of_the_package_is_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in _modules(PACKAGE) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_regime_order_is_written_once():
    """No tuple or list literal of the four regime names (any case, with or without a ``p_`` prefix)
    outside ``core/regime.py``, where the ``Regime`` enum defines the order."""
    found = []
    for path in _modules(PACKAGE):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) == 4 and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                names = {e.value.lower().removeprefix("p_") for e in node.elts}
                if names == REGIME_NAMES:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, found


HISTORY = re.compile(r"\bissue\s*#?\d+|\bthe review\b|\breview's\b|\bthe seed's\b|\bof the seed\b|\bseed's (?:kappa|heston)",
                     flags=re.IGNORECASE)


def test_comments_explain_instead_of_pointing_at_history():
    roots = [PACKAGE, REPO / "resources", REPO / "tests", REPO / "benchmarks", REPO / "sql"]
    found = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix not in (".py", ".sql") or "__pycache__" in path.parts or path == Path(__file__):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if HISTORY.search(line):
                    found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert not found, "\n".join(found)
