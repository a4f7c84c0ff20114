"""The bad-input corpus (tests/bad_inputs/cases.toml): every case exits 2 with one line naming
the field, prints nothing on stdout, and leaves every file as it was."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.core.files import MAX_INPUT_BYTES

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = tomllib.loads((CORPUS / "cases.toml").read_text())["case"]
runner = CliRunner()

_VALID = {"toml": '[budget]\nflops = 1e23\n',
          "json": '{"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}\n',
          "csv": (CORPUS / "files" / "runs_good.csv").read_text(), "npz": ""}


def _sparse(path: Path, size: int, head: bytes) -> None:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)  # a hole, not a write: the file costs no disk and no time


GENERATORS = {
    # binary garbage with NULs, from a fixed seed
    "binary": lambda p, ext: p.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
    # a valid file, but saved as UTF-16 (Windows editors) or Latin-1
    "utf16": lambda p, ext: p.write_bytes(_VALID[ext].encode("utf-16")),
    "latin1": lambda p, ext: p.write_bytes(("# modèle de référence\n" + _VALID[ext]).encode("latin-1")),
    "empty": lambda p, ext: p.write_bytes(b""),
    "huge": lambda p, ext: _sparse(p, MAX_INPUT_BYTES + 1, _VALID[ext].encode()),
    # nesting deep enough to exhaust a recursive parser
    "deep": lambda p, ext: p.write_text(("a = " if ext == "toml" else "") + "[" * 100_000 + "]" * 100_000 + "\n"),
    # one cell over the csv module's field limit (131072 characters)
    "big-cell": lambda p, ext: p.write_text('params,tokens,loss\n"' + "1" * 200_000 + '",2e9,3.1\n'),
    # a named pipe given as an output: an atomic replace would put a file in its place
    "fifo": lambda p, ext: os.mkfifo(p),
}


def _expand(arg: str, tmp: Path) -> str:
    def sub(m):
        kind, name = m.group(1), m.group(2)
        if kind == "file":
            dst = tmp / name
            shutil.copyfile(CORPUS / "files" / name, dst)
            return str(dst)
        stem, ext = name.rsplit(".", 1)
        dst = tmp / name
        if not dst.exists():
            GENERATORS[stem](dst, ext)
        return str(dst)

    return re.sub(r"\{(file|gen):([^}]+)\}", sub, arg.replace("{tmp}", str(tmp)))


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with a hash of its content."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[str(p.relative_to(root))] = h.hexdigest()
    return out


def _case_id(c: dict) -> str:
    return " ".join(c["args"])[:90]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)  # anything written to the current directory shows up in the snapshot
    return d


@pytest.mark.parametrize("existing", [False, True], ids=["no-output-yet", "output-exists"])
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input(case, existing, workdir):
    args = [_expand(a, workdir) for a in case["args"]]
    if case.get("output", True):
        out = workdir / ("out.png" if args[0] == "plot" else "out.txt")
        if existing:
            out.write_bytes(b"an earlier result that must survive\n")
        args += ["-o", str(out)]
    before = _snapshot(workdir)
    r = runner.invoke(app, args)
    assert r.exit_code == 2, f"exit {r.exit_code}\nstdout: {r.stdout}\nstderr: {r.stderr}\n{r.exception!r}"
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and case["field"] in lines[0], lines[0]
    for text in case.get("contains", []):
        assert text in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == "", r.stdout
    assert _snapshot(workdir) == before, "a file was created or modified"


def test_the_corpus_is_big_and_covers_every_command():
    commands = {c["args"][0] for c in CASES}
    assert len(CASES) >= 60
    assert {"optimize", "convert", "hardware", "laws", "sweep", "fit", "audit", "plot", "merge", "bench"} <= commands
    unused = {p.name for p in (CORPUS / "files").iterdir()} - {
        m for c in CASES for a in c["args"] for m in re.findall(r"\{file:([^}]+)\}", a)}
    assert not unused, f"corpus files no case uses: {sorted(unused)}"
    assert len({_case_id(c) for c in CASES}) == len(CASES), "duplicate cases"


# The same path through a real process: the interpreter's own exit, no CliRunner in between.
REAL = ["optimize --flops nan", "sweep {file:scn_mfu_above_one.toml}", "fit {gen:binary.csv}",
        "merge {file:sweep_fp_a.json} {file:sweep_fp_b.json}", "audit --model gpt-5", "plot histogram"]


@pytest.mark.slow
@pytest.mark.parametrize("cmd", REAL)
def test_bad_input_in_a_real_process(cmd, workdir):
    args = [_expand(a, workdir) for a in cmd.split()]
    before = _snapshot(workdir)
    env = dict(os.environ)  # the session's compile cache, as users run
    p = subprocess.run([sys.executable, "-m", "budgetopt", *args], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("error: "), p.stderr
    assert p.stdout == "" and _snapshot(workdir) == before


def test_tests_readme_states_the_corpus_size():
    text = (Path(__file__).parent / "README.md").read_text()
    assert f"holds {len(CASES)} cases" in text and f"| {len(CASES) * 2 + len(REAL) + 2} |" in text
    assert f"a corpus of {len(CASES)} bad inputs" in (Path(__file__).parent.parent / "README.md").read_text()
