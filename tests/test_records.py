"""The records that cross the library boundary are declared: every key each command writes in
its JSON is a key of the TypedDict beside the function that builds it (a typo in a record's
key, or a key added without declaring it, fails here), and the declared required keys are
there. Each command runs as a user runs it (`-f json`), in its common variants."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import get_type_hints

import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.fit.fitting import FitRecord
from budgetopt.fit.forecast import Forecast
from budgetopt.fit.ladder import LadderDesigns
from budgetopt.plan.audit import AuditRow
from budgetopt.plan.launch import RunPlan
from budgetopt.plan.optimum import Optimum
from budgetopt.sweep.results import SweepResult

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
#: keys a record writes that are not names: Approach 2's allocation at the target, keyed by it
DYNAMIC = {FitRecord: re.compile(r"tokens_per_param_at_[0-9.e+]+")}


def _json(args) -> dict | list:
    r = runner.invoke(app, [*map(str, args), "-f", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _conforms(rec: dict, declared: type) -> None:
    keys = set(get_type_hints(declared))
    extra = {k for k in rec if k not in keys and not (declared in DYNAMIC and DYNAMIC[declared].fullmatch(k))}
    assert not extra, f"{declared.__name__} does not declare {sorted(extra)}"
    assert declared.__required_keys__ <= set(rec), declared.__required_keys__ - set(rec)


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("records") / "runs.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_runs.py"), "-o", str(path), "--law", "gadre2024-rpj",
                    "--metric", "--sizes", "5"], check=True, capture_output=True)
    return path


@pytest.mark.parametrize("args", [
    ["--flops", "1e23"], ["--flops", "1e23", "--law", "tokens-per-param"], ["--target-loss", "2.1"],
    ["--flops", "1e24", "--unique-tokens", "1e11", "--max-epochs", "4"],
    ["--flops", "1e24", "--inference-tokens", "1e12"],
    ["--gpu", "h100-sxm", "--count", "64", "--days", "10", "--price-per-hour", "2", "--grid-intensity", "0.4"],
])
def test_optimize(args):
    _conforms(_json(["optimize", *args]), Optimum)


@pytest.mark.parametrize("args", [
    ["--law", "ludziejewski2025-moe", "--flops", "1e23", "--max-total-params", "2e11"],
    ["--law", "krajewski2024-moe", "--gpu", "h100-sxm", "--count", "64", "--days", "10", "--price-per-hour", "2",
     "--grid-intensity", "0.4", "--inference-tokens", "1e12"],
])
def test_optimize_moe(args):
    from budgetopt.plan.moe_optimum import MoEOptimum

    _conforms(_json(["optimize", *args]), MoEOptimum)


@pytest.mark.parametrize("args", [["--flops", "1e23"], ["--params", "7e9", "--tokens", "2e12", "--gpu", "a100-80gb",
                                                         "--count", "64", "--grid-intensity", "0.4"]])
def test_plan(args):
    _conforms(_json(["plan", *args]), RunPlan)


@pytest.mark.parametrize("args", [["--law", "kumar2024-precision", "--flops", "1e21"],
                                  ["--law", "kumar2024-precision", "--flops", "1e21", "--serve-precision", "4",
                                   "--inference-tokens", "1e12"],
                                  ["--law", "kumar2024-precision", "--gpu", "h100-sxm", "--count", "8", "--days", "3",
                                   "--precision", "8"],
                                  ["--gpu", "b200", "--count", "64", "--days", "10", "--precision", "auto",
                                   "--price-per-hour", "3", "--grid-intensity", "0.4"]])
def test_optimize_precision(args):
    from budgetopt.plan.precision_choice import PrecisionAnswer

    _conforms(_json(["optimize", *args]), PrecisionAnswer)


def test_plan_of_a_routed_architecture():
    _conforms(_json(["plan", "--arch", "mixtral-8x7b", "--gpu", "h100-sxm", "--count", "64", "--days", "5", "--ep",
                     "8"]), RunPlan)


@pytest.mark.parametrize("law", ["hoffmann2022", "tokens-per-param", "gadre2024-rpj"])
def test_audit(law):
    for row in _json(["audit", "--law", law]):
        _conforms(row, AuditRow)


def test_fit_every_approach_grouped_or_not(runs_csv):
    for approach in ("3", "vpnls", "2"):
        rec = _json(["fit", runs_csv, "--approach", approach, "--bootstrap", "0" if approach == "2" else "3"])
        _conforms(rec, FitRecord)
        assert rec["approach"] == approach  # the id a user types is the id the record carries
    every = _json(["fit", runs_csv, "--approach", "all", "--exclude-outliers", "--outlier-k", "0.5"])
    _conforms(every, FitRecord)
    for rec in every["fits"].values():
        _conforms(rec, FitRecord)
    assert any(rec.get("dropped") for rec in every["fits"].values())  # the exclusion's keys are checked too


def test_forecast(runs_csv):
    _conforms(_json(["forecast", "--params", "7e9", "--tokens", "1.4e11"]), Forecast)
    _conforms(_json(["forecast", runs_csv, "--metric", "avg_err", "--flops", "1e22", "--bootstrap", "20"]), Forecast)


def test_ladder():
    rec = _json(["ladder", "--ladders", "10", "--approach", "2", "--gpu", "h100-sxm", "--max-regret", "0.001"])
    _conforms(rec, LadderDesigns)


def test_sweep_and_merge(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text('samples = 6000\n[law]\npreset = "besiroglu2024"\nuncertainty = "covariance"\n'
                        '[budget]\ngpu = "h100-sxm"\ncount = {dist = "uniform", low = 256, high = 512}\n'
                        'hours = 500\nmfu = 0.4\n[plan]\nseq_len = 8192\n')
    whole = _json(["sweep", scenario, "-q"])
    _conforms(whole, SweepResult)
    assert whole["plan"] is not None
    _conforms(whole["plan"], RunPlan)
    shards = []
    for i in range(2):
        out = tmp_path / f"s{i}.json"
        assert runner.invoke(app,
                             ["sweep", str(scenario), "-q", "--shard", f"{i}/2", "-f", "json", "-o",
                              str(out)]).exit_code == 0
        shards.append(out)
    _conforms(_json(["merge", *shards]), SweepResult)
