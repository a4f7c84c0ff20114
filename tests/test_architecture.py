"""docs/architecture.md matches the code: every module is named there, no module imports one
from a later layer, and no public name is left unused."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "budgetopt"
DOC = (ROOT / "docs" / "architecture.md").read_text()

# The layers of docs/architecture.md, lowest first. A module may import its own layer and the ones before it.
LAYERS = [
    {"errors", "interrupts", "files", "units", "devices"},
    {"hardware", "laws", "allocation", "distributions", "summary", "shape", "memory", "runs", "vpnls", "isoflop",
     "validity", "links"},
    {"plan", "scenario", "fit", "audit", "sweep", "bench", "launch", "forecast", "ladder"},
    {"report", "plots", "cli", "__main__", "__init__"},
]


def _modules() -> dict[str, Path]:
    """Top-level module name (a sweep/ file counts as 'sweep') -> file, for every file."""
    return {str(p.relative_to(PKG)): p for p in PKG.rglob("*.py")}


def _top(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The budgetopt modules a file imports, at module level or inside a function."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PKG).parts) - 1  # a sweep/ file: '..' is the package
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("budgetopt."):
                out.add(node.module.split(".")[1])
            elif node.level == depth + 1:  # relative to the package root
                if node.module:
                    out.add(node.module.split(".")[0])
                else:
                    out.update(a.name for a in node.names)
    return out


def test_every_module_is_named_in_the_architecture_page():
    for rel in _modules():
        name = rel.split("/")[-1]
        shown = rel if rel.startswith("sweep/") else name
        assert f"`{shown}`" in DOC or f"`{name}`" in DOC, f"{rel} is not in docs/architecture.md"


def test_every_layer_module_exists_and_each_is_in_one_layer():
    tops = {_top(rel) for rel in _modules()}
    listed = set().union(*LAYERS)
    assert tops == listed, (tops - listed, listed - tops)


def test_no_module_imports_a_later_layer():
    layer = {m: i for i, group in enumerate(LAYERS) for m in group}
    for rel, path in _modules().items():
        me = _top(rel)
        for dep in _imports(path) - {me}:
            assert dep in layer, f"{rel} imports unknown module {dep}"
            assert layer[dep] <= layer[me], f"{rel} (layer {layer[me]}) imports {dep} (layer {layer[dep]})"


def test_no_unused_public_names():
    """A public function, class or constant of the package is used somewhere besides its own
    definition: in the package, the tests, the benchmarks or the scripts."""
    corpus = "\n".join(p.read_text() for d in ("budgetopt", "tests", "benchmarks", "scripts")
                       for p in (ROOT / d).rglob("*.py"))
    unused = []
    for rel, path in _modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            else:
                continue
            for name in names:
                if name.startswith("_") or name in ("main", "app"):
                    continue
                if len(re.findall(rf"\b{re.escape(name)}\b", corpus)) < 2:
                    unused.append(f"{rel}:{name}")
    assert not unused, f"public names nothing uses: {unused}"
