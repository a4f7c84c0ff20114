"""Soak: the real CLI, as a user runs it, at the size the README advertises.

Each sweep is a fresh process with JAX's persistent compile cache on: the first run fills a
fresh cache directory and every later one loads its executables from it — the path on which
1e7-sample sweeps on a 2-core host used to abort in XLA's collectives. The default device
split (one CPU device per core) and ``--host-devices 1`` each run the table, ``--format json``
and ``--quiet``; every run must exit 0, and every JSON must be identical to the bit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from .procs import ROOT, clean_env, cli, strip_run

# CI soaks at 2e7 (6 runs, ~1.2 min); a session soak runs BUDGETOPT_SOAK_SAMPLES=5e7 or 1e8
SAMPLES = os.environ.get("BUDGETOPT_SOAK_SAMPLES", "2e7")
ARGS = ["sweep", "--example", "h100-cluster", "--samples", SAMPLES]


def _table_body(text: str) -> str:
    """A sweep table without its last line (devices, chunk and elapsed time)."""
    return "\n".join(text.rstrip("\n").splitlines()[:-1])


@pytest.mark.slow
def test_sweeps_with_a_warm_compile_cache_always_finish_identically(tmp_path):
    env = {"BUDGETOPT_CACHE_DIR": str(tmp_path / "cache")}  # fresh: the first run fills it
    jsons, tables, log = [], [], []
    for devices in ([], ["--host-devices", "1"]):
        for _rep in range(1):  # 6 runs in all: the first fills the cache, five load it (12 took 150 s of CI)
            for mode in ("json", "table", "quiet"):
                out = tmp_path / f"out-{len(log)}.{'txt' if mode == 'table' else 'json'}"
                extra = {"json": ["-f", "json"], "table": [], "quiet": ["-q", "-f", "json"]}[mode]
                t0 = time.time()
                r = cli([*ARGS, *devices, *extra, "-o", out], env=env, timeout=600)
                log.append((devices, mode, r.returncode, round(time.time() - t0, 1)))
                assert r.returncode == 0, (log, r.stderr[-3000:])
                assert "rendezvous" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
                if mode == "table":
                    tables.append(_table_body(out.read_text()))
                else:
                    res = json.loads(out.read_text())
                    assert res["samples"] == int(float(SAMPLES)) and res["not_converged"] == 0
                    jsons.append(json.dumps(strip_run(res), sort_keys=True))
    assert len(set(jsons)) == 1, log
    assert len(set(tables)) == 1, log
    print("soak runs (devices, mode, exit, seconds):", log)


@pytest.mark.slow
def test_two_processes_under_jax_distributed_at_1e7_samples_match_one(tmp_path):
    """Two processes (one CPU device each) split 1e7 samples, gather once at the end, and give
    the single-process result to the bit. The coordinator's port is held until just before the
    processes start and retried if another process took it in between."""
    out = tmp_path / "dist.json"
    single = cli([*ARGS[:-1], "1e7", "--host-devices", "1", "-q", "-f", "json"])
    assert single.returncode == 0, single.stderr
    for _attempt in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [subprocess.Popen([sys.executable, "-m", "budgetopt", *ARGS[:-1], "1e7", "--distributed",
                                   "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
                                   "-q", "-f", "json", "-o", str(out)], cwd=ROOT, env=clean_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
        errs = [p.communicate(timeout=600)[1] for p in procs]
        if all(p.returncode == 0 for p in procs):
            break
        if not any("address already in use" in e.lower() for e in errs):
            raise AssertionError(errs)
    dist = json.loads(out.read_text())
    assert dist["run"]["processes"] == 2 and dist["run"]["devices"] == 2
    assert json.dumps(strip_run(dist), sort_keys=True) == json.dumps(strip_run(json.loads(single.stdout)),
                                                                     sort_keys=True)
