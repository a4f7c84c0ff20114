"""Crash safety: a sweep or a fit killed at random points (SIGINT and SIGKILL, again and again)
never leaves a corrupted output or checkpoint, and resuming gives the uninterrupted result."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from budgetopt import files
from budgetopt.errors import InputError

from .procs import cli, popen, strip_run


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


@pytest.mark.slow
def test_sweep_killed_again_and_again_resumes_to_the_uninterrupted_result(tmp_path):
    scen = ["--example", "h100-cluster", "--samples", "30000000", "--candidates", "8", "--seed", "11"]
    env = {"BUDGETOPT_CACHE_DIR": str(tmp_path / "jax-cache")}  # later starts skip the compile
    ref = tmp_path / "ref.json"
    r = cli(["sweep", *scen, "--chunk-size", "262144", "-q", "-f", "json", "-o", ref], env=env)
    assert r.returncode == 0, r.stderr
    want = json.dumps(strip_run(json.loads(ref.read_text())), sort_keys=True)

    ck, out = tmp_path / "ck.npz", tmp_path / "out.json"
    args = ["sweep", *scen, "--chunk-size", "262144", "--checkpoint", ck, "--resume", "-q", "-f", "json", "-o", out]
    rng = random.Random(2026)
    positions, kills = [], {signal.SIGINT: 0, signal.SIGKILL: 0}
    for attempt in range(6):
        sig = (signal.SIGINT, signal.SIGKILL)[attempt % 2]
        before = ck.stat().st_mtime_ns if ck.exists() else None
        p = popen(args, env=env)
        if attempt > 0:  # let it make progress first (a new checkpoint), so kills land mid-run
            deadline = time.time() + 180
            while p.poll() is None and time.time() < deadline and (
                    not ck.exists() or ck.stat().st_mtime_ns == before):
                time.sleep(0.02)
        # the first attempt is killed during start-up; later ones up to a second after progress
        sent = _kill_at(p, rng.uniform(0.3, 2.0) if attempt == 0 else rng.uniform(0.0, 1.0), sig)
        _, err = p.communicate(timeout=300)
        if not sent:  # it finished before the signal: the output must be the whole result
            assert p.returncode == 0, err
            break
        kills[sig] += 1
        if ck.exists():
            positions.append(_checkpoint_position(ck))
        if out.exists():  # the signal landed after the result was written: it must be whole
            assert json.dumps(strip_run(json.loads(out.read_text())), sort_keys=True) == want
            break
        if sig == signal.SIGINT:
            # "interrupted; resume with ..." once the sweep has started, "interrupted" before
            assert p.returncode == 130 and err.strip().splitlines()[-1].startswith("interrupted"), err
    assert kills[signal.SIGINT] >= 1 and kills[signal.SIGKILL] >= 1, kills
    assert positions == sorted(positions) and len(positions) >= 3, positions  # progress is never lost
    if not out.exists():
        r = cli(args, env=env)
        assert r.returncode == 0, r.stderr
    assert json.dumps(strip_run(json.loads(out.read_text())), sort_keys=True) == want
    assert not list(tmp_path.glob(".ck.npz.*.tmp")), "a resumed run left a killed run's temporary file"


@pytest.mark.slow
def test_fit_killed_at_random_points_leaves_the_old_output_or_the_new_one(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_runs", Path(__file__).parent.parent / "scripts" / "make_runs.py")
    make_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_runs)
    runs = tmp_path / "runs.csv"
    rows = make_runs.make_runs(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37, sizes_per_budget=10, noise=0.002, seed=4)
    runs.write_text("params,tokens,flops,loss\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    law = tmp_path / "law.json"
    old = '{"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}\n'
    law.write_text(old)
    args = ["fit", runs, "--bootstrap", "40", "-o", law, "-f", "json"]
    env = {"BUDGETOPT_CACHE_DIR": str(tmp_path / "jax-cache")}
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
    again = json.loads(cli(args, env=env).stdout)
    for k in ("E", "A", "B", "alpha", "beta", "bootstrap"):
        assert full[k] == again[k]
    if finished is not None:
        assert {k: finished[k] for k in ("E", "A", "B", "alpha", "beta")} == {k: full[k] for k in ("E", "A", "B", "alpha", "beta")}


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
    assert e.value.field == "-o"
    with pytest.raises(InputError):
        files.write_atomic(tmp_path, "x")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_a_killed_writer_are_removed_on_resume(tmp_path):
    ck = tmp_path / "a[1].npz"  # glob metacharacters in the name must not widen the match
    (tmp_path / ".a[1].npz.x1.tmp").write_bytes(b"partial")
    (tmp_path / ".other.npz.x2.tmp").write_bytes(b"not ours")
    assert files.remove_stale_temps(ck) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.x2.tmp"]
