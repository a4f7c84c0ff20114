"""The rough edges a new user met, each tried the way they tried it: whole device counts,
flags that do nothing, library errors in the user's words, tables at 80 and 120 columns, figure
labels that do not collide, and every benchmark script still running."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt.cli import plots
from budgetopt.cli.commands import app, flag_of
from budgetopt.core.errors import InputError, ParameterError
from budgetopt.core.units import format_count
from budgetopt.model.hardware import Cluster, cluster_from
from budgetopt.model.laws import resolve_law
from budgetopt.plan.optimum import Constraints
from budgetopt.sweep import scenario as scn
from budgetopt.sweep.sampling import make_sampler, sample_indices

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


# ---------------------------------------------------------------------------------------------
# A device count is a whole number >= 1


@pytest.mark.parametrize("count", [2.5, 0.5, 0.0, math.inf])
def test_hardware_count_must_be_whole(count):
    acc = cluster_from("h100-sxm")[0].accelerator
    with pytest.raises(ParameterError) as e:
        Cluster(acc, count=count, hours=10.0)
    assert e.value.param == "count"


def test_a_drawn_count_is_rounded_to_whole_devices():
    """count ~ uniform(1, 9): C / (peak x 3600 x hours x MFU) is a whole number >= 1 for every
    draw, and the draws cover 1..9 (rounded, so both ends get half a bin)."""
    sc = scn.from_dict({"budget": {"gpu": "h100-sxm", "count": {"dist": "uniform", "low": 1, "high": 9},
                                   "hours": 100, "mfu": 0.5}})
    lo, hi = sample_indices(0, 20_000)
    draw = make_sampler(sc, jnp.float64)(lo, hi)
    peak = sc.accelerator.peak_flops("bf16")
    count = np.exp(np.asarray(draw.budget.log_c)) / (peak * 3600 * 100 * 0.5)
    np.testing.assert_allclose(count, np.round(count), rtol=1e-9)
    assert set(np.round(count).astype(int)) == set(range(1, 10))
    frac = np.mean(np.round(count) == 1)
    assert abs(frac - 1 / 16) < 0.01  # [1, 1.5) of a width-8 interval


def test_a_fixed_count_is_used_as_given():
    sc = scn.from_dict({"budget": {"gpu": "h100-sxm", "count": 3, "hours": 100, "mfu": 0.5}})
    lo, hi = sample_indices(0, 8)
    log_c = np.asarray(make_sampler(sc, jnp.float64)(lo, hi).budget.log_c)
    np.testing.assert_allclose(np.exp(log_c), 3 * 989e12 * 3600 * 100 * 0.5,
                               rtol=1e-12)  # the catalog's dense bf16 peak


# ---------------------------------------------------------------------------------------------
# Every flag is validated; one that has no effect says so


def test_a_flag_without_effect_is_checked_and_named():
    r = runner.invoke(app, ["convert", "1e23", "--mfu", "0.5", "--price-per-hour", "2"])
    assert r.exit_code == 0
    assert "note: --mfu has no effect without --gpu" in r.stderr
    assert "note: --price-per-hour has no effect without --gpu" in r.stderr
    bad = runner.invoke(app, ["convert", "1e23", "--mfu", "1.5"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --mfu:")
    quiet = runner.invoke(app, ["convert", "1e23", "--gpu", "h100-sxm", "--mfu", "0.5"])
    assert quiet.exit_code == 0 and "note:" not in quiet.stderr


# ---------------------------------------------------------------------------------------------
# The library names parameters; the edges rename them, in one place each


@pytest.mark.parametrize("name,command,flag", [
    ("max_params", None, "--max-params"), ("law_params.E", None, "--law-params.E"), ("output", None, "-o"),
    ("runs", "fit", "RUNS"), ("results", "merge", "FILES"), ("flops", "convert", "VALUE"),
    ("flops", "optimize", "--flops"),
    ("--sweep", None, "--sweep"), ("SCENARIO", None, "SCENARIO"), ("sweep_file", "plot", "--sweep"),
])
def test_flag_of(name, command, flag):
    assert flag_of(name, command) == flag


def test_parameter_errors_name_parameters_and_rename_at_the_edge():
    with pytest.raises(ParameterError) as e:
        Constraints(max_epochs=2.0)
    assert e.value.field == "max_epochs" and "needs unique_tokens" in e.value.message
    cli = e.value.rename(flag_of)
    assert (cli.field, cli.message) == ("--max-epochs",
                                        "needs --unique-tokens (epochs are counted over the unique data)")
    toml = e.value.rename(scn.toml_path_of)
    assert (toml.field, toml.message) == ("constraints.max_epochs",
                                          "needs data.unique_tokens (epochs are counted over the unique data)")
    # user text is never read as a name
    quoted = ParameterError("law", "unknown law '{max_params}'")
    assert quoted.rename(flag_of).message == "unknown law '{max_params}'"


def test_scenario_errors_name_the_toml_path():
    with pytest.raises(InputError) as e:
        scn.from_dict({"law": {"preset": "chinchilla"}, "budget": {"flops": 1e23}})
    assert e.value.field == "law.preset"
    with pytest.raises(InputError) as e:
        scn.from_dict({"budget": {"gpu": "h100-sxm", "dtype": "fp9", "count": 8, "hours": 1, "mfu": 0.4}})
    assert e.value.field == "budget.dtype"
    with pytest.raises(InputError) as e:
        scn.with_overrides(scn.example("h100-cluster"), seed=-1)
    assert e.value.field == "seed"


def test_library_code_raises_no_flag_names():
    """Flags belong to the CLI: no module below it raises an error on a '--flag' field."""
    import re

    for path in (ROOT / "budgetopt").rglob("*.py"):
        if path.parent.name == "cli" or path.name == "__main__.py":
            continue
        hits = re.findall(r"(?:Input|Parameter)Error\(\s*f?\"--", path.read_text())
        assert not hits, f"{path.name} raises on a flag name"


# ---------------------------------------------------------------------------------------------
# Tables at 80 and 120 columns

_TABLES = [["optimize", "--flops", "1e23"], ["optimize", "--gpu", "h100-sxm", "--count", "1024", "--days", "30"],
           ["convert", "1e23", "--gpu", "h100-sxm", "--count", "8"], ["hardware"], ["laws"], ["audit"],
           ["audit", "--law", "tokens-per-param"], ["fit", "{runs}"], ["fit", "{runs}", "--approach", "2"],
           ["ladder", "--ladders", "10", "--approach", "2", "--gpu", "h100-sxm", "--max-regret", "0.001"]]


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "runs.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_runs.py"), "-o", str(path)], check=True,
                   capture_output=True)
    return path


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("args", _TABLES, ids=[" ".join(a) for a in _TABLES])
def test_tables_fit_the_terminal(args, width, runs_csv, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))
    r = runner.invoke(app, [str(runs_csv) if a == "{runs}" else a for a in args])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert max(map(len, lines)) <= width, "\n".join(line for line in lines if len(line) > width)
    assert lines[0].startswith("budgetopt") or lines[0].startswith(("Accelerators", "Scaling laws"))
    if "fit" in args and "--approach" not in args:  # the title is whole, not broken mid-phrase
        assert lines[0].endswith("runs") and "Approach 3 on" in lines[0]


def test_narrow_tables_say_what_they_leave_out(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    r = runner.invoke(app, ["audit"])
    assert "not shown at 80 columns:" in r.stdout and "loss_gap" in r.stdout and "verdict" in r.stdout
    monkeypatch.setenv("COLUMNS", "200")
    wide = runner.invoke(app, ["audit"])
    header = wide.stdout.split("┡")[0]  # the column headers, wrapped at their spaces
    assert "not shown" not in wide.stdout and "gap" in header and "verdict" in header


# ---------------------------------------------------------------------------------------------
# Figures: labels that do not collide


def _boxes(fig):
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        inside = ax.get_window_extent(renderer)
        for t in ax.texts:
            bb = plots.text_box(t, renderer)
            assert inside.x0 <= bb.x0 and bb.x1 <= inside.x1 and inside.y0 <= bb.y0 and bb.y1 <= inside.y1, t.get_text()
            out.append((ax, t.get_text(), bb))
    return out


@pytest.mark.parametrize("size", [(11.0, 4.8), (8.0, 4.0)])
def test_frontier_labels_do_not_overlap(size):
    fig = plots.frontier([resolve_law("hoffmann2022"), resolve_law("besiroglu2024")], width=size[0], height=size[1])
    boxes = _boxes(fig)
    from budgetopt.core.files import data_toml

    assert len(boxes) == 2 * len(data_toml("models.toml"))  # every catalog model numbered on both panels
    for (ax1, t1, b1), (ax2, t2, b2) in combinations(boxes, 2):
        if ax1 is ax2:
            assert not b1.overlaps(b2), f"labels {t1} and {t2} overlap"
    key = [t.get_text().replace("\u00a0", " ") for t in fig.texts]
    n_models = len(data_toml("models.toml"))  # numbered by compute: OPT-175B the least, Llama 3.1 405B the most
    assert any("1 OPT-175B" in k and f"{n_models} Llama 3.1 405B" in k for k in key)
    fig.canvas.draw()  # wrapped between entries only: every line starts with a number and its name
    lines = [line for t in fig.texts for line in t._get_wrapped_text().split("\n")]
    assert all(re.match(r"(★ trained models: )?\d+\u00a0\S", line) for line in lines), lines
    for ax in fig.axes:  # sizes and tokens read as 100M, 1T
        lo, hi = ax.get_ylim()
        ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and lo <= t.get_position()[1] <= hi]
        assert len(ticks) >= 3 and all(re.fullmatch(r"\d+(\.\d+)?[KMBT]", t) for t in ticks), ticks
    plots._plt().close(fig)


def test_sweep_figure_log_axes_have_several_labels():
    from budgetopt import sweep as sw

    res = sw.run(scn.with_overrides(scn.example("h100-cluster"), candidates=8), samples=20_000)
    fig = plots.sweep(res)
    fig.canvas.draw()
    for ax in fig.axes:
        if ax.get_xscale() == "log":
            labels = [t.get_text() for t in ax.get_xticklabels(minor=False) + ax.get_xticklabels(minor=True)
                      if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
            assert len(labels) >= 2, (ax.get_title(), labels)
            if "N" in ax.get_xlabel() or "D*" in ax.get_xlabel():  # counts read as people write them
                assert all(re.fullmatch(r"\d+(\.\d+)?[KMBT]", t) for t in labels), labels
    regret = fig.axes[3]
    rec = res["recommendation"]["params"]
    assert [t.get_text() for t in regret.texts] == [format_count(rec)]  # the recommended size on its marker
    plots._plt().close(fig)


def test_forecast_figure_says_sizes_and_dashes_the_extrapolated_link(tmp_path):
    from budgetopt.fit.forecast import forecast_metric

    src = tmp_path / "runs.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_runs.py"), "--law", "gadre2024-rpj", "--metric",
                    "--sizes", "5", "-o", str(src)], check=True)
    res = forecast_metric(src, "avg_err", flops=1e23, bootstrap=20)
    fig = plots.forecast(res)
    ax = fig.axes[0]
    assert f"N = {format_count(res['target']['params'])}, D = {format_count(res['target']['tokens'])}" in \
        ax.get_title()
    solid, dashed = ax.get_lines()[:2]
    runs = np.asarray(res["runs"]["loss"])
    xs = np.asarray(solid.get_xdata(), float)
    shown = ~np.isnan(np.asarray(solid.get_ydata(), float) + xs)
    assert xs[shown].min() >= runs.min() and xs[shown].max() <= runs.max()  # solid only where runs hold it
    assert dashed.get_linestyle() == "--" and np.nanmin(np.asarray(dashed.get_xdata(), float)) < runs.min()
    plots._plt().close(fig)


def test_isoflop_figure_draws_the_runs_budgets_each_in_its_curves_colour(tmp_path):
    from matplotlib.colors import to_rgba

    from budgetopt.fit.approach2 import curves
    from budgetopt.fit.runs import read_runs

    src = tmp_path / "runs.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_runs.py"), "-o", str(src)], check=True)
    runs = read_runs(src)
    groups = curves(runs, 0.05)
    fig = plots.isoflop(resolve_law("besiroglu2024"), runs=runs)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(groups) >= 3 and len(lines) == len(groups)  # one curve per budget of the runs, no invented budgets
    marks = [c for c in ax.collections if c.get_offsets().shape[0] > 1]  # the runs (optima are one point each)
    assert len(marks) == len(groups)
    for line, g, pts in zip(lines, groups, marks):
        assert np.allclose(to_rgba(line.get_color()), pts.get_facecolor()[0])
        assert np.allclose(np.sort(pts.get_offsets()[:, 0]), np.sort(np.exp(runs.log_n[g])))
        x = np.asarray(line.get_xdata())
        assert x.min() <= np.exp(runs.log_n[g]).min() and x.max() >= np.exp(runs.log_n[g]).max()
    assert len({tuple(to_rgba(line.get_color())) for line in lines}) == len(lines)  # budgets told apart
    plots._plt().close(fig)


def test_loss_frontier_band_is_the_law_uncertainty_and_ticks_read_as_numbers():
    spec = resolve_law("besiroglu2024")
    log_c = np.linspace(math.log(1e18), math.log(1e27), 80)
    # independent: the closed-form optimum of every covariance draw, written in NumPy float64
    th = np.random.default_rng(0).multivariate_normal([float(v) for v in spec.params], spec.covariance, 2000)
    a, b, e, al, be = (np.exp(th[:, 0:1]), np.exp(th[:, 1:2]), np.exp(th[:, 2:3]), th[:, 3:4], th[:, 4:5])
    s = np.exp(log_c)[None, :] / 6
    n = (al * a / (be * b)) ** (1 / (al + be)) * s ** (be / (al + be))
    ref = np.percentile(e + a / n ** al + b / (s / n) ** be, [5, 95], axis=0)
    assert np.allclose(plots._band(spec, log_c)[2], ref, rtol=1e-5)

    fig = plots.loss_vs_compute([resolve_law("hoffmann2022"), spec])
    fig.canvas.draw()
    ax = fig.axes[0]
    (band,) = ax.collections  # hoffmann2022 publishes no covariance: one band, besiroglu2024's
    lo, hi = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert np.isclose(lo, ref.min(), rtol=1e-4) and np.isclose(hi, ref.max(), rtol=1e-4)
    central = ax.get_lines()[2].get_ydata()  # hoffmann line, its E, then besiroglu's line
    assert np.all((ref[0] <= central) & (central <= ref[1]))
    floors = sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":")
    assert np.allclose(floors, sorted(math.exp(float(x.params.log_E)) for x in (spec, resolve_law("hoffmann2022"))))
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(ticks) >= 3 and all(re.fullmatch(r"\d(\.\d+)?", t) for t in ticks), ticks
    plots._plt().close(fig)


# ---------------------------------------------------------------------------------------------
# Every benchmark script runs (at a tiny size) and prints its table

_BENCH = {
    "bench_sweep.py": ["--samples", "2e5", "--repeats", "1", "--baseline-samples", "2e5"],
    "bench_solver.py": ["--problems", "4096", "--scipy-sample", "50", "--lbfgs-sample", "512", "--repeats", "1"],
    "bench_fit.py": ["--scipy-starts", "4", "--repeats", "1"],
    "bench_peer.py": [],
    "bench_vpnls.py": ["--groups", "2", "--replicates", "7", "--scipy-fits", "2", "--repeats", "1"],
    "bench_ladder.py": ["--designs", "2", "--ladders", "64", "--scipy-fits", "2"],
    "bench_moe.py": ["--problems", "1000", "--scipy-sample", "5", "--repeats", "1"],
    "bench_forms.py": ["--replicates", "2", "--scipy-replicates", "1", "--repeats", "1", "--starts", "8"],
    "bench_curves.py": ["--replicates", "2", "--scipy-replicates", "1", "--repeats", "1", "--shorter", "8"],
    "run.py": ["--help"],
}


def test_every_benchmark_script_has_a_smoke_test():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {"common.py"}
    assert scripts == set(_BENCH)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(_BENCH))
def test_benchmark_script_runs(script):
    env = dict(os.environ, XLA_FLAGS="")
    p = subprocess.run([sys.executable, script, *_BENCH[script]], cwd=ROOT / "benchmarks", capture_output=True,
                       text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    if script != "run.py":
        assert "|---" in p.stdout, p.stdout[-2000:]  # its markdown table


def test_the_convergence_warning_never_rounds_to_zero():
    from budgetopt.cli.report import convergence_warning

    w = convergence_warning({"not_converged": 3, "samples": 10_000_000})
    assert "3 of 10,000,000 samples (3e-07 of the total)" in w and "0.000%" not in w
    assert convergence_warning({"not_converged": 0, "samples": 10}) is None


def test_help_shows_the_defaults_written_in_brackets(monkeypatch):
    """Typer renders help as rich markup, where "[default: x]" was a markup tag and vanished
    from every option whose default is described in words; the CLI escapes the bracket."""
    monkeypatch.setenv("COLUMNS", "200")
    text = runner.invoke(app, ["optimize", "--help"]).stdout
    assert "[default: besiroglu2024]" in text and "[default: 0.4]" in text
    text = runner.invoke(app, ["ladder", "--help"]).stdout
    assert "([[design]] tables) [default: the built-in family of 24]" in text
