import json
import math

import jax
from typer.testing import CliRunner

from budgetopt.cli.commands import app


def test_bench_reports_rates_and_devices():
    r = CliRunner().invoke(app, ["bench", "--samples", "65536", "--problems", "65536", "-f", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["backend"] == jax.default_backend() and len(res["devices"]) == jax.device_count()
    for k in ("sweep_samples_per_s", "solver_problems_per_s"):
        assert math.isfinite(res[k]) and res[k] > 0
    assert res["sweep_samples_per_s"] == res["sweep_samples"] / res["sweep_seconds"]


def test_bench_bad_input():
    r = CliRunner().invoke(app, ["bench", "--samples", "10"])
    assert r.exit_code == 2 and "--samples" in r.stderr
