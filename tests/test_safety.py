"""Safety: no user text is ever executed, files are written only where the user asked, and the
compile cache lives in the user's own cache directory and is refused when others can write it."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from budgetopt.core.runtime import compile_cache_dir

from .procs import cli

PACKAGE = Path(__file__).resolve().parent.parent / "budgetopt"

# Calls that run text as code, deserialise code, or hand a string to a shell.
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "yaml", "subprocess", "code", "codeop"}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            yield node, name


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_code_execution_of_any_text(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad = [m for m in mods if m.split(".")[0] in FORBIDDEN_MODULES]
            assert not bad, f"{path.name}:{node.lineno} imports {bad}"
    for node, name in _calls(tree):
        where = f"{path.name}:{node.lineno}"
        # jax.jit(...).lower(...).compile() is XLA compiling a traced function, not text
        if name == "compile" and isinstance(node.func, ast.Attribute):
            continue
        assert name not in FORBIDDEN_CALLS, f"{where} calls {name}()"
        assert name != "system" and name != "popen", f"{where} runs a shell"
        for kw in node.keywords:
            if kw.arg == "allow_pickle":
                assert isinstance(kw.value, ast.Constant) and kw.value.value is False, f"{where} allows pickles"


def test_custom_laws_go_through_a_restricted_parser():
    """--law-params is read by a key=number grammar, never evaluated: an expression is an error."""
    r = cli(["optimize", "--flops", "1e23", "--law-params", "E=__import__('os').getcwd(),A=1,B=1,alpha=0.3,beta=0.3"])
    assert r.returncode == 2 and r.stderr.startswith("error: --law-params"), r.stderr


def test_compile_cache_follows_xdg_and_is_private(tmp_path, monkeypatch):
    monkeypatch.delenv("BUDGETOPT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = compile_cache_dir()
    assert d == tmp_path / "xdg" / "budgetopt" / "jax" and d.is_dir()
    assert (d.stat().st_mode & 0o077) == 0, oct(d.stat().st_mode)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache_dir() == tmp_path / "home" / ".cache" / "budgetopt" / "jax"
    for off in ("off", "OFF", "0", ""):
        monkeypatch.setenv("BUDGETOPT_CACHE_DIR", off)
        assert compile_cache_dir() is None


def test_a_cache_others_can_write_is_refused(tmp_path, monkeypatch, capsys):
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("BUDGETOPT_CACHE_DIR", str(shared))
    assert compile_cache_dir() is None
    assert "writable by other users" in capsys.readouterr().err
    os.chmod(shared, 0o700)
    assert compile_cache_dir() == shared


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_files_are_written_only_where_asked(tmp_path):
    """Every writing command, run in an empty directory with a fresh HOME: the only new files
    are the outputs named on the command line, plus caches under the user's cache directory."""
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    rows = [(n, d, 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28) for n in (1e8, 3e8, 1e9) for d in (2e9, 6e9, 2e10)]
    (work / "runs.csv").write_text("params,tokens,loss\n" + "".join(f"{n:.3g},{d:.3g},{y:.5f}\n" for n, d, y in rows))
    # BUDGETOPT_CACHE_DIR unset: the default cache location is what is under test
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "MPLCONFIGDIR": str(home / ".cache" / "matplotlib"),
           "TMPDIR": str(tmp_path / "tmp"), "BUDGETOPT_CACHE_DIR": None}
    (tmp_path / "tmp").mkdir()
    commands = [
        (["optimize", "--flops", "1e23", "-o", "out/opt.json", "-f", "json"], {"out/opt.json"}),
        (["sweep", "--example", "h100-cluster", "--samples", "3000", "--candidates", "4", "--checkpoint", "out/ck.npz",
          "-f", "json", "-o", "out/sweep.json", "-q"], {"out/ck.npz", "out/sweep.json"}),
        (["fit", "runs.csv", "-o", "out/fit.txt", "--law-out", "out/law.json"], {"out/fit.txt", "out/law.json"}),
        (["audit", "-o", "out/audit.csv", "-f", "csv"], {"out/audit.csv"}),
        (["plot", "frontier", "-o", "out/frontier.svg"], {"out/frontier.svg"}),
        (["merge", "out/sweep.json", "-f", "json", "-o", "out/merged.json"], {"out/merged.json"}),
    ]
    (work / "out").mkdir()
    expected = {"runs.csv"}
    for args, outputs in commands:
        r = cli(args, env=env, cwd=work)
        assert r.returncode == 0, (args, r.stderr)
        expected |= outputs
        assert _tree(work) == expected, (args, _tree(work) ^ expected)
    assert json.loads((work / "out" / "merged.json").read_text())["samples"] == 3000
    stray = {p for p in _tree(home) if not p.startswith((".cache/budgetopt/", ".cache/matplotlib/"))}
    assert not stray, stray
    assert any(p.startswith(".cache/budgetopt/jax/") for p in _tree(home)), "the compile cache was not used"
    assert not _tree(tmp_path / "tmp"), _tree(tmp_path / "tmp")

