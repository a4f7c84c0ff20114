"""Running the real CLI in child processes (for what CliRunner cannot show: signals, devices,
the interpreter's own exit path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra) -> dict:
    """The environment for a child process, without the XLA_FLAGS that in-process CLI calls set;
    the test session's compile cache (conftest.py) unless ``extra`` says otherwise (a value of
    None removes a variable)."""
    e = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    e = dict(e, **extra)
    return {k: v for k, v in e.items() if v is not None}


def cli(args, env=None, cwd=ROOT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "budgetopt", *map(str, args)], capture_output=True, text=True,
                          env=clean_env(**(env or {})), cwd=cwd, **kw)


def popen(args, env=None, **kw) -> subprocess.Popen:
    """The CLI as a child process (it reacts to SIGINT even when started with SIGINT ignored,
    as a shell starts background jobs: interrupts.route_signals blocks it and waits for it)."""
    return subprocess.Popen([sys.executable, "-m", "budgetopt", *map(str, args)], env=clean_env(**(env or {})),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def strip_run(res: dict) -> dict:
    """A sweep result without its "run" block (timings, devices), for equality checks."""
    return {k: v for k, v in res.items() if k != "run"}
