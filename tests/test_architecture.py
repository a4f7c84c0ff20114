"""The package's shape, checked: a folder per layer, packages that import only the ones below
them, each package's modules in the order its face lists them, unique names, and
docs/architecture.md naming every module. The checker is a function of a source tree, so a
test plants a wrong import in a copy and sees it caught."""

from __future__ import annotations

import ast
import collections
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "budgetopt"
DOC = (ROOT / "docs" / "architecture.md").read_text()

#: The layers, lowest first: a package imports its own and lower layers only; ``plan``, ``fit`` and
#: ``curves`` share a layer and never import each other.
LAYERS = [{"core"}, {"model"}, {"plan", "fit", "curves"}, {"sweep"}, {"cli"}]
LAYER = {p: i for i, group in enumerate(LAYERS) for p in group}


def _modules(pkg: Path) -> dict[str, Path]:
    """'package.module' -> file for every module (faces excluded)."""
    return {f"{p.parent.name}.{p.stem}": p for p in pkg.glob("*/*.py") if p.name != "__init__.py"}


def _imports(path: Path, pkg: Path) -> set[str]:
    """The budgetopt modules (or packages, when a name is not a module) a file imports, at module
    level or inside a function, as 'package.module' / 'package'."""
    here = list(path.relative_to(pkg).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if not (node.module or "").startswith("budgetopt."):
                continue
            base = node.module.split(".")[1:]
        else:
            base = here[:len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        for alias in node.names:
            name = base + [alias.name]
            out.add(".".join(name) if (pkg.joinpath(*name).with_suffix(".py")).exists() else ".".join(base))
    return {m for m in out if m}


def _face_order(pkg: Path, package: str) -> list[str]:
    """The modules a package's face lists, in order (bullets '- ``name``:' in its docstring)."""
    doc = ast.get_docstring(ast.parse((pkg / package / "__init__.py").read_text())) or ""
    return re.findall(r"^- ``(\w+)``", doc, re.M)


def violations(pkg: Path) -> list[str]:
    """Everything wrong with the package at ``pkg``'s layering, one line each."""
    out = []
    top = sorted(p.name for p in pkg.iterdir() if p.name != "__pycache__")
    packages = sorted(p.name for p in pkg.iterdir() if (p / "__init__.py").exists())
    if top != sorted(["__init__.py", "__main__.py", "data", *packages]):
        out.append(f"budgetopt/ holds more than __init__.py, __main__.py, data/ and the subpackages: {top}")
    if set(packages) != set(LAYER):
        out.append(f"packages {packages} are not the layers {sorted(LAYER)}")
    mods = _modules(pkg)
    for name, path in sorted(mods.items()):
        package = name.split(".")[0]
        for dep in sorted(_imports(path, pkg)):
            dep_pkg = dep.split(".")[0]
            if dep_pkg not in LAYER or dep_pkg == package:
                continue
            if package == "core":
                out.append(f"{name} imports {dep}: core imports only core")
            elif LAYER[dep_pkg] > LAYER[package]:
                out.append(f"{name} imports {dep}, a package above its own")
            elif LAYER[dep_pkg] == LAYER[package]:
                out.append(f"{name} imports {dep}: plan, fit and curves never import each other")
    for package in packages:
        order = _face_order(pkg, package)
        files = sorted(m.split(".")[1] for m in mods if m.startswith(package + "."))
        if sorted(order) != files:
            out.append(f"{package}/__init__.py lists {order}, the package holds {files}")
            continue
        for i, m in enumerate(order):
            later = {f"{package}.{x}" for x in order[i + 1:]}
            for dep in sorted(_imports(pkg / package / f"{m}.py", pkg) & later):
                out.append(f"{package}.{m} imports {dep}, listed after it in its face")
    return out


def test_the_package_is_layered():
    assert violations(PKG) == []


def test_a_wrong_import_is_caught(tmp_path):
    """The checker fails on a copy with one planted upward import, one sideways one, one
    from core into the science, and a face listing its modules out of order."""
    copy = tmp_path / "budgetopt"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    (copy / "data").mkdir()
    plant = {"model/laws.py": "from ..cli import report\n", "plan/audit.py": "from ..fit.runs import APPROACHES\n",
             "core/units.py": "from ..model import laws\n", "fit/runs.py": "from .ladder import Design\n"}
    for rel, line in plant.items():
        f = copy / rel
        f.write_text(f.read_text() + "\n\ndef _planted():\n    " + line)
    found = "\n".join(violations(copy))
    assert "model.laws imports cli.report, a package above its own" in found
    assert "plan.audit imports fit.runs: plan, fit and curves never import each other" in found
    assert "core.units imports model.laws: core imports only core" in found
    assert "fit.runs imports fit.ladder, listed after it in its face" in found


def _top_level_names(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not (n.startswith("__") and n.endswith("__"))]


def test_no_two_modules_define_the_same_name():
    """Every module-level name, private ones too, is defined by one module only."""
    seen: dict[str, list[str]] = {}
    for name, path in _modules(PKG).items():
        for n in _top_level_names(path):
            seen.setdefault(n, []).append(name)
    assert {n: m for n, m in seen.items() if len(m) > 1} == {}


def test_module_names_are_unique_and_never_a_name_their_package_exports():
    import importlib

    stems = [m.split(".")[1] for m in _modules(PKG)]
    assert len(stems) == len(set(stems)), sorted(stems)
    for package in {m.split(".")[0] for m in _modules(PKG)}:
        face = importlib.import_module(f"budgetopt.{package}")
        assert not set(face.__all__) & set(_face_order(PKG, package)), package
        for name in face.__all__:  # every name a face promises loads
            assert getattr(face, name) is not None, (package, name)


def test_every_module_is_named_in_the_architecture_page():
    for name in _modules(PKG):
        package, module = name.split(".")
        assert f"`{package}/{module}.py`" in DOC or f"`{module}`" in DOC, f"{name} is not in docs/architecture.md"


def test_no_unused_public_names():
    """A public function, class or constant of the package is used somewhere besides its own
    definition: in the package, the tests, the benchmarks or the scripts."""
    corpus = "\n".join(p.read_text() for d in ("budgetopt", "tests", "benchmarks", "scripts")
                       for p in (ROOT / d).rglob("*.py"))
    # whole-word occurrences of every identifier, counted in one pass (a regex per name over the
    # corpus took 36 s): a maximal run of word characters is exactly what \bNAME\b matches
    words = collections.Counter(re.findall(r"\w+", corpus))
    unused = []
    for name, path in _modules(PKG).items():
        for n in _top_level_names(path):
            if n.startswith("_") or n in ("main", "app") or n.endswith("_command"):  # commands: typer calls them
                continue
            if words[n] < 2:
                unused.append(f"{name}:{n}")
    assert not unused, f"public names nothing uses: {unused}"
