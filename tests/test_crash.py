"""Crash safety: a sweep or a fit killed at random points (SIGINT and SIGKILL, again and again)
never leaves a corrupted output or checkpoint, and resuming gives the uninterrupted result."""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from budgetopt.core import files
from budgetopt.core.errors import InputError

from .procs import ROOT, clean_env, cli, popen, strip_run


def _kill_at(p, delay: float, sig: int) -> bool:
    """Send ``sig`` after ``delay`` seconds unless the process ended first; True if it was sent."""
    deadline = time.time() + delay
    while time.time() < deadline:
        if p.poll() is not None:
            return False
        time.sleep(0.02)
    p.send_signal(sig)
    return True


def _checkpoint_position(ck: Path) -> int:
    """A checkpoint on disk is always whole: a readable npz whose meta names its position."""
    with np.load(ck, allow_pickle=False) as z:
        meta = json.loads(bytes(z["__meta__"]).decode())
        assert all(np.all(np.isfinite(z[k])) for k in z.files if z[k].dtype.kind == "f")
    return int(meta["next"])


def _position(ck: Path) -> int | None:
    """The checkpoint's position, or None while there is none (or it is being replaced)."""
    try:
        return _checkpoint_position(ck)
    except (FileNotFoundError, OSError, KeyError, ValueError):
        return None


@pytest.mark.slow
def test_sweep_killed_again_and_again_resumes_to_the_uninterrupted_result(tmp_path):
    """Six kills, alternating SIGINT and SIGKILL, each landing mid-run by construction: the
    first during start-up, the others a random fraction of a chunk after the run's first new
    checkpoint — and only while at least 60 % of the sweep is still to do (hundreds of chunks,
    seconds of work), so a run cannot finish before its signal, however fast the machine."""
    n, chunk = 30_000_000, 65536
    scen = ["--example", "h100-cluster", "--samples", str(n), "--candidates", "8", "--seed", "11"]
    ref = tmp_path / "ref.json"
    r = cli(["sweep", *scen, "--chunk-size", str(chunk), "-q", "-f", "json", "-o", ref])
    assert r.returncode == 0, r.stderr
    want = json.dumps(strip_run(json.loads(ref.read_text())), sort_keys=True)

    ck, out = tmp_path / "ck.npz", tmp_path / "out.json"
    args = ["sweep", *scen, "--chunk-size", str(chunk), "--checkpoint", ck, "--resume", "-q", "-f", "json", "-o", out]
    rng = random.Random(2026)
    positions, kills = [], {signal.SIGINT: 0, signal.SIGKILL: 0}
    for attempt in range(6):
        sig = (signal.SIGINT, signal.SIGKILL)[attempt % 2]
        before = _position(ck)
        p = popen(args)
        if attempt == 0:  # during start-up: JAX import, compile-cache load, pilot
            time.sleep(rng.uniform(0.2, 1.0))
        else:  # after this run's first checkpoint, a random fraction of a chunk later
            deadline = time.time() + 240
            while p.poll() is None and time.time() < deadline and _position(ck) in (None, before):
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.01))
        pos = _position(ck)
        assert p.poll() is None, (f"attempt {attempt}: the run ended before its signal ({p.returncode}): "
                                  f"{p.stderr.read()}")
        assert pos is None or pos <= 0.4 * n, f"attempt {attempt}: too little work left to kill mid-run ({pos})"
        p.send_signal(sig)
        _, err = p.communicate(timeout=300)
        kills[sig] += 1
        assert not out.exists(), (f"attempt {attempt} ({sig!r} at {pos}) was killed but wrote a result: "
                                  f"{p.returncode} {err}")
        if ck.exists():
            positions.append(_checkpoint_position(ck))
        if sig == signal.SIGINT:
            # "interrupted; resume with ..." once the sweep has started, "interrupted" before
            assert p.returncode == 130 and err.strip().splitlines()[-1].startswith("interrupted"), err
        else:
            assert p.returncode == -signal.SIGKILL
    assert kills == {signal.SIGINT: 3, signal.SIGKILL: 3}
    assert positions == sorted(positions) and len(positions) >= 4, positions  # progress is never lost
    r = cli(args)
    assert r.returncode == 0, r.stderr
    assert json.dumps(strip_run(json.loads(out.read_text())), sort_keys=True) == want
    assert not list(tmp_path.glob(".ck.npz.*.tmp")), "a resumed run left a killed run's temporary file"


def _wait_until_signals_are_routed(p, timeout: float = 60.0) -> None:
    """Until the child blocks SIGINT in its main thread (interrupts.route_signals): before
    that moment it is still the bare interpreter starting up."""
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        status = Path(f"/proc/{p.pid}/status").read_text()
        blocked = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
        if blocked & (1 << (signal.SIGINT - 1)):
            return
        time.sleep(0.001)
    raise AssertionError("the CLI never routed its signals")


@pytest.mark.slow
def test_ctrl_c_in_the_first_second_always_ends_with_one_line_and_exit_130(tmp_path):
    """Ctrl-C while the CLI starts (imports, compile-cache load, pilot) at 12 moments spread
    over its first 1.1 s: always exit 130 and one 'interrupted' line, never a traceback, a
    crash, or a sweep that ignores the signal and writes its result (each was seen with
    Python's own SIGINT handler, interrupts.py). A signal before the interpreter has loaded
    budgetopt at all (its first ~50 ms) ends it by the signal itself, writing nothing."""
    out = tmp_path / "out.json"
    args = ["sweep", "--example", "h100-cluster", "--samples", "3e7", "-q", "-f", "json", "-o", out]
    p = popen(args)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=120)
    assert p.returncode in (-signal.SIGINT, 130) and not out.exists()
    for i in range(12):
        p = popen(args)
        _wait_until_signals_are_routed(p)  # Linux: the main thread's blocked-signal mask
        time.sleep(0.1 * i)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 130, (i, p.returncode, err[-2000:])
        assert err.strip().splitlines() == [err.strip()] and err.startswith("interrupted"), (i, err[-2000:])
        assert not out.exists()
    sig = popen(args)
    _wait_until_signals_are_routed(sig)
    time.sleep(0.5)
    sig.send_signal(signal.SIGTERM)
    _, err = sig.communicate(timeout=120)
    assert sig.returncode == 143 and err.startswith("terminated") and not out.exists(), err
    # started with SIGINT ignored, as a shell starts a background job: `kill -INT` still stops it
    cmd = " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "budgetopt", *args])
    bg = subprocess.Popen(["sh", "-c", f"trap '' INT; exec {cmd}"], cwd=ROOT, env=clean_env(), stderr=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, text=True)
    _wait_until_signals_are_routed(bg)
    bg.send_signal(signal.SIGINT)
    _, err = bg.communicate(timeout=120)
    assert bg.returncode == 130 and err.startswith("interrupted") and not out.exists(), err


@pytest.mark.slow
def test_fit_killed_at_random_points_leaves_the_old_output_or_the_new_one(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_runs",
                                                  Path(__file__).parent.parent / "scripts" / "make_runs.py")
    make_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_runs)
    runs = tmp_path / "runs.csv"
    rows = make_runs.make_runs(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37, sizes_per_budget=10, noise=0.002,
                               seed=4)
    runs.write_text("params,tokens,flops,loss\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    law = tmp_path / "law.json"
    old = '{"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}\n'
    law.write_text(old)
    args = ["fit", runs, "--bootstrap", "40", "--law-out", law]
    env = {}
    rng = random.Random(7)
    finished, kills = None, {signal.SIGINT: 0, signal.SIGKILL: 0}
    for attempt in range(5):
        sig = (signal.SIGINT, signal.SIGKILL)[attempt % 2]
        p = popen(args, env=env)
        sent = _kill_at(p, rng.uniform(0.5, 5.0), sig)
        kills[sig] += sent
        _, err = p.communicate(timeout=300)
        text = law.read_text()
        if text != old:  # replaced: then it is a whole fit
            finished = json.loads(text)
            assert {"E", "A", "B", "alpha", "beta", "bootstrap"} <= set(finished)
        if sent and sig == signal.SIGINT and p.returncode != 0:
            assert p.returncode == 130 and "Traceback" not in err, err
        if sig == signal.SIGINT:
            assert not list(tmp_path.glob(".law.json.*.tmp")), "SIGINT left a temporary file"
        if not sent:
            assert p.returncode == 0, err
            break
    assert kills[signal.SIGINT] >= 1 and kills[signal.SIGKILL] >= 1, kills
    r = cli(args, env=env)  # a fit has no resume: a rerun is the uninterrupted result, bit for bit
    assert r.returncode == 0, r.stderr
    full = json.loads(law.read_text())
    again = json.loads(cli([*args, "-f", "json"], env=env).stdout)  # the report in JSON is the law's record
    for k in ("E", "A", "B", "alpha", "beta", "bootstrap"):
        assert full[k] == again[k]
    if finished is not None:
        law_keys = ("E", "A", "B", "alpha", "beta")
        assert {k: finished[k] for k in law_keys} == {k: full[k] for k in law_keys}


# ---------------------------------------------------------------------------------------------- the writer itself

def test_write_atomic_interrupted_at_the_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old\n")
    os.chmod(target, 0o640)

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"], "the temporary file was left behind"
    files.write_atomic(target, "new\n")
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o640  # mode kept


def test_write_atomic_errors_are_input_errors_and_write_nothing(tmp_path):
    with pytest.raises(InputError) as e:
        files.write_atomic(tmp_path / "missing" / "x.json", "x")
    assert e.value.field == "output"
    with pytest.raises(InputError):
        files.write_atomic(tmp_path, "x")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_a_killed_writer_are_removed_on_resume(tmp_path):
    ck = tmp_path / "a[1].npz"  # glob metacharacters in the name must not widen the match
    (tmp_path / ".a[1].npz.x1.tmp").write_bytes(b"partial")
    (tmp_path / ".other.npz.x2.tmp").write_bytes(b"not ours")
    assert files.remove_stale_temps(ck) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.x2.tmp"]
