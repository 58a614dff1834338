"""docs/ARCHITECTURE.md cannot drift from the code: its asset table is the one the loaded
``Definitions`` give, and its package map lists exactly the packages and modules on disk.

To refresh both blocks after a change: ``python tests/platform/test_architecture_doc.py --write``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "ARCHITECTURE.md"
PACKAGES = ("alloc_assets", "resources")


def asset_table() -> str:
    """One row per asset of the loaded definitions: group, partitions, concurrency pool, upstream
    assets, module."""
    from alloc_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    rows = ["| asset | group | partitioned by | pool | upstream | defined in |", "|---|---|---|---|---|---|"]
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets_def = node.assets_def
        fn = getattr(assets_def.node_def, "compute_fn", None)
        module = getattr(getattr(fn, "decorated_fn", None), "__module__", None) or _graph_module(assets_def)
        parts = assets_def.partitions_def
        parted = "-" if parts is None else type(parts).__name__.replace("PartitionsDefinition", "").lower() or "yes"
        upstream = ", ".join(f"`{p.to_user_string()}`" for p in sorted(node.parent_keys, key=lambda k: k.to_user_string()))
        path = module.replace(".", "/") + ".py"
        pool = getattr(assets_def.node_def, "pool", None) or "-"
        rows.append(f"| `{key.to_user_string()}` | {node.group_name} | {parted} | {pool} | {upstream or '-'} | `{path}` |")
    return "\n".join(rows)


def _graph_module(assets_def) -> str:
    """The module of a graph-backed asset: that of its first op's function."""
    for node in assets_def.node_def.iterate_op_defs():
        fn = getattr(node.compute_fn, "decorated_fn", None)
        if fn is not None:
            return fn.__module__
    raise AssertionError(f"no module found for {assets_def.key}")


def package_map() -> str:
    """Every package of the project: its path and the first line of its docstring, then its modules."""
    import ast

    lines = []
    for top in PACKAGES:
        for init in sorted((REPO / top).rglob("__init__.py")):
            folder = init.parent
            if "__pycache__" in folder.parts:
                continue
            doc = (ast.get_docstring(ast.parse(init.read_text())) or "").split("\n")[0]
            modules = sorted(p.stem for p in folder.glob("*.py") if p.name != "__init__.py")
            lines.append(f"{folder.relative_to(REPO).as_posix() + '/':<31} {doc}")
            if modules:
                lines.append(f"{'':<31}   {', '.join(modules)}")
    return "\n".join(lines)


def _block(text: str, name: str) -> str:
    m = re.search(rf"<!-- {name}:begin -->\n(.*?)\n<!-- {name}:end -->", text, flags=re.S)
    assert m, f"docs/ARCHITECTURE.md has no '{name}' block"
    return m.group(1).strip().removeprefix("```").removesuffix("```").strip()


def test_the_asset_table_is_the_loaded_definitions():
    assert _block(DOC.read_text(), "asset-table") == asset_table(), (
        "docs/ARCHITECTURE.md's asset table is out of date: run python tests/platform/test_architecture_doc.py --write")


def test_the_package_map_lists_every_package_and_module():
    assert _block(DOC.read_text(), "package-map") == package_map(), (
        "docs/ARCHITECTURE.md's package map is out of date: run python tests/platform/test_architecture_doc.py --write")


def _write() -> None:
    text = DOC.read_text()
    for name, body in (("asset-table", asset_table()), ("package-map", "```\n" + package_map() + "\n```")):
        text, n = re.subn(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)",
                          lambda m: m.group(1) + body + "\n" + m.group(2), text, flags=re.S)
        assert n == 1, f"no '{name}' block to write"
    DOC.write_text(text)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    if "--write" in sys.argv:
        _write()
    else:
        print(asset_table() + "\n\n" + package_map())
