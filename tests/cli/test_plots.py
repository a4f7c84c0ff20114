"""Every figure kind writes a valid, non-blank PNG and SVG of the requested size, with log axes
where they belong; bad input exits 2."""

import inspect
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt import sweep as sw
from budgetopt.cli import plots
from budgetopt.cli.commands import app
from budgetopt.model.laws import get_preset
from budgetopt.sweep import scenario as scn

runner = CliRunner()


@pytest.fixture(scope="module")
def sweep_json(tmp_path_factory):
    import dataclasses

    res = sw.run(dataclasses.replace(scn.example("h100-cluster"), candidates=8), samples=8192)
    f = tmp_path_factory.mktemp("sw") / "sweep.json"
    f.write_text(json.dumps(res))
    return f


def figures(sweep_json):
    specs = [get_preset("hoffmann2022"), get_preset("besiroglu2024")]
    return {"frontier": plots.frontier(specs, width=8, height=4), "isoflop": plots.isoflop(specs[1], width=6, height=4),
            "loss-vs-compute": plots.loss_vs_compute(specs, width=6, height=4),
            "sweep": plots.sweep(json.loads(sweep_json.read_text()), width=10, height=4)}


def test_axes_are_log_scaled_where_they_should_be(sweep_json):
    f = figures(sweep_json)
    for ax in f["frontier"].axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert f["isoflop"].axes[0].get_xscale() == "log" and f["isoflop"].axes[0].get_yscale() == "linear"
    assert f["loss-vs-compute"].axes[0].get_xscale() == "log"
    ax_n, ax_d, ax_l, ax_r = f["sweep"].axes
    assert ax_n.get_xscale() == "log" and ax_l.get_xscale() == "linear" and ax_r.get_yscale() == "log"
    for fig in f.values():
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    labels = f["frontier"].axes[0].get_legend_handles_labels()[1]
    assert "hoffmann2022" in labels and any("p05" in t for t in labels)


@pytest.fixture(scope="module")
def forecast_json(tmp_path_factory):
    from budgetopt.fit.forecast import forecast_runs
    from tests.fit.test_forecast import ladder

    res = forecast_runs(ladder(np.random.default_rng(0)), flops=1e22, bootstrap=10)
    f = tmp_path_factory.mktemp("fc") / "forecast.json"
    f.write_text(json.dumps(res))
    return f


@pytest.fixture(scope="module")
def curves_json(tmp_path_factory):
    """A curves record in the shape `budgetopt curves -f json` writes (its numbers are the
    reference law's; the figure's content against a real fit: tests/curves/test_curves_cli.py)."""
    from tests.curves.reference import OFFICIAL, multipower

    steps = np.arange(500, 4000, 100)
    lrs = np.linspace(3e-4, 3e-5, 4000)
    loss = multipower(OFFICIAL["25"], lrs, steps)
    run = {"run": "r", "curve": {"step": steps.tolist(), "loss": loss.tolist(), "fitted": loss.tolist(),
                                 "lr": lrs[steps].tolist()}}
    pred = {"schedule": "p", "curve": {"step": steps.tolist(), "loss": loss.tolist(), "low": (loss - 0.01).tolist(),
                                       "high": (loss + 0.01).tolist(), "lr": lrs[steps].tolist()}}
    f = tmp_path_factory.mktemp("cu") / "curves.json"
    f.write_text(json.dumps({"form": "multipower", "group": "all", "fitted": [run], "holdout": [run],
                             "predictions": [pred]}))
    return f


@pytest.fixture(scope="module")
def backtest_json(tmp_path_factory):
    from budgetopt.fit.backtest import backtest_file
    from tests.fit.test_backtest import ladder

    d = tmp_path_factory.mktemp("bt")
    ladder(d / "runs.csv", noise=0.01)
    f = d / "backtest.json"
    f.write_text(json.dumps(backtest_file(d / "runs.csv", approach="2", c_col="budget")))
    return f


@pytest.fixture(scope="module")
def ladder_json(tmp_path_factory):
    from budgetopt.fit import ladder
    from budgetopt.model.laws import resolve_law

    designs = [ladder.Design("few", (1e18, 1e19, 1e20), 3, 2.0), ladder.Design("many", (1e18, 1e19, 1e20), 7, 4.0),
               ladder.Design("narrow", (1e18, 1e19, 1e20), 3, 1.2)]
    res = ladder.design_ladders(resolve_law(), 1e23, designs, approach="2", ladders=20, noise=ladder.Noise(0.01))
    f = tmp_path_factory.mktemp("lad") / "ladder.json"
    f.write_text(json.dumps(res))
    return f


def test_ladder_figure_plots_every_design_and_marks_the_recommended(ladder_json):
    res = json.loads(ladder_json.read_text())
    fig = plots.ladder(res)
    ax_e, ax_r = fig.axes[:2]
    assert ax_e.get_xscale() == "log" and ax_r.get_yscale() == "log"
    pts = np.vstack([c.get_offsets() for c in ax_r.collections if len(c.get_offsets())])
    for r in res["designs"]:  # each design's (cost, p95 regret) is drawn, and the star on the chosen one
        assert np.any(np.all(np.isclose(pts, [r["cost_flops"], r["regret_p95"]], rtol=1e-9), axis=1)), r["design"]
    labels = fig.legends[0].get_texts()
    assert any(t.get_text() == f"recommended: {res['recommended']}" for t in labels)


def test_ladder_designs_of_equal_cost_do_not_hide_each_other(ladder_json):
    res = json.loads(ladder_json.read_text())
    fig = plots.ladder(res)
    fig.canvas.draw()
    ax_e = fig.axes[0]
    bars = ax_e.get_lines()  # one p50-p95 bar per design, in the designs' order
    assert len(bars) == len(res["designs"])
    page_x = [b.get_transform().transform(b.get_xydata())[0, 0] for b in bars]
    few, narrow = (res["designs"].index(next(r for r in res["designs"] if r["design"] == n))
                   for n in ("few", "narrow"))
    assert res["designs"][few]["cost_flops"] == res["designs"][narrow]["cost_flops"]  # same budgets and sizes
    for i, r in enumerate(res["designs"]):  # the data stay the cost; only the page position moves
        assert bars[i].get_xdata()[0] == r["cost_flops"]
    assert abs(page_x[few] - page_x[narrow]) == pytest.approx(plots.DODGE_PT * fig.dpi / 72)
    lo, hi = ax_e.get_xlim()  # and every design is inside the axes
    assert all(lo < r["cost_flops"] < hi for r in res["designs"])
    assert "equal costs side by side" in ax_e.get_title()
    plots._plt().close(fig)


def test_memory_figure_draws_the_plan_it_is_given(tmp_path):
    plan = tmp_path / "plan.json"
    args = ["plan", "--gpu", "a100-80gb", "--count", "64", "--days", "14", "--tp", "2", "-f", "json", "-o", str(plan)]
    assert runner.invoke(app, args).exit_code == 0
    rec = json.loads(plan.read_text())
    fig = plots.memory_of_plan(rec, width=5, height=4)
    ax = fig.axes[0]
    stage = rec["layout"]["zero"]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[stage] == f"ZeRO-{stage}\n(plan)" and sum("(plan)" in t for t in labels) == 1
    for part, bars in zip(("weights", "gradients", "optimizer", "activations"), ax.containers):
        assert bars[stage].get_height() == pytest.approx(rec["memory"][part] / 1e9, rel=1e-12)  # the plan's numbers
    usable = [line.get_ydata()[0] for line in ax.get_lines()]
    assert usable == [pytest.approx(rec["memory"]["device_memory"] / 1e9)]
    assert f"{rec['shape']['n_layer']} x {rec['shape']['d_model']:,}" in ax.get_title()
    fig.canvas.draw()  # every word on the page, tick labels apart, at 5 x 4 inches
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.texts, *ax.get_legend().get_texts()]
    for t in texts:
        bb = t.get_window_extent(renderer)
        assert page.x0 <= bb.x0 and bb.x1 <= page.x1 and page.y0 <= bb.y0 and bb.y1 <= page.y1, t.get_text()
    ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
    assert all(a.x1 < b.x0 for a, b in zip(ticks, ticks[1:]))
    plots._plt().close(fig)


def test_plot_says_which_flags_a_figure_does_not_read(tmp_path, sweep_json):
    r = runner.invoke(app, ["plot", "frontier", "-o", str(tmp_path / "f.png"), "--sweep", str(sweep_json),
                            "--max-flops", "1e26"])
    assert r.exit_code == 0 and "note: --sweep has no effect on plot frontier" in r.stderr
    assert "--max-flops" not in r.stderr  # read by the frontier
    r = runner.invoke(app, ["plot", "sweep", "-o", str(tmp_path / "s.png"), "--sweep", str(sweep_json),
                            "--law", "kaplan2020", "--min-flops", "1e20"])
    assert r.exit_code == 0
    assert [line for line in r.stderr.splitlines() if line.startswith("note:")] == [
        "note: --law has no effect on plot sweep", "note: --min-flops has no effect on plot sweep"]
    r = runner.invoke(app, ["plot", "isoflop", "-o", str(tmp_path / "i.png"), "--law", "kaplan2020"])
    assert "note:" not in r.stderr
    for kind in plots.KINDS:  # every input a figure reads is one draw() takes
        assert plots.INPUTS_OF[kind] <= set(inspect.signature(plots.draw).parameters)


@pytest.mark.parametrize("kind", plots.KINDS)
def test_cli_writes_png_and_svg_of_the_requested_size(tmp_path, kind, sweep_json, forecast_json, ladder_json,
                                                      backtest_json, curves_json):
    import matplotlib.image as mpimg

    extra = {"sweep": ["--sweep", str(sweep_json)], "forecast": ["--forecast", str(forecast_json)],
             "ladder": ["--ladder", str(ladder_json)], "backtest": ["--backtest", str(backtest_json)],
             "curves": ["--curves", str(curves_json)]}.get(kind, [])
    png = tmp_path / f"{kind}.png"
    r = runner.invoke(app, ["plot", kind, "-o", str(png), "--width", "6", "--height", "4", "--dpi", "50", *extra])
    assert r.exit_code == 0, r.output
    img = mpimg.imread(png)
    assert img.shape[:2] == (200, 300)  # 4 x 6 inches at 50 dpi
    assert float(np.var(img[..., :3])) > 1e-3  # not blank
    svg = tmp_path / f"{kind}.svg"
    r = runner.invoke(app, ["plot", kind, "-o", str(svg), *extra])
    assert r.exit_code == 0 and svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_moe_figure_is_optimize_s_answer():
    """The figure's best expert count at a budget is what `optimize --experts auto` chooses
    there (with and without the cap), and its E = 8 curve is optimize's loss at --experts 8."""
    from budgetopt.model.laws import resolve_law
    from budgetopt.plan.moe_optimum import optimize_moe

    spec = resolve_law("ludziejewski2025-moe", moe=True)
    fig = plots.moe(1e20, 1e25, max_total_params=1e11)
    ax_l, ax_e = fig.axes[:2]
    free, capped = ax_e.get_lines()[:2]
    for line, cap in ((free, None), (capped, 1e11)):
        for i in (0, 20, 40, 59):
            c = float(line.get_xdata()[i])
            assert line.get_ydata()[i] == optimize_moe(spec, flops=c, max_total_params=cap)["experts"]
    e8 = next(ln for ln in ax_l.get_lines() if ln.get_label() == "E = 8")
    c = float(e8.get_xdata()[30])
    assert e8.get_ydata()[30] == pytest.approx(optimize_moe(spec, flops=c, experts=8)["loss"], rel=1e-12)
    assert capped.get_ydata()[-1] < free.get_ydata()[-1]  # the cap buys fewer experts at the top
    plots._plt().close(fig)


def test_memory_figure_bars_are_the_memory_model():
    """Each ZeRO stage's stacked bar adds up to memory()'s total for that stage (and the parts
    shrink as the paper's Figure 1 says: optimizer states, then gradients, then weights)."""
    import dataclasses

    from budgetopt.model.memory import Layout, memory
    from budgetopt.model.shape import Shape

    shape, layout = Shape(32, 4096, 32, d_ff=11008, seq_len=4096), Layout(dp=64, micro_batch=2)
    fig = plots.memory_by_zero(shape, layout, 80.0)
    bars = [p for p in fig.axes[0].patches if p.get_height() > 0 or p.get_y() > 0]
    heights = np.zeros(4)
    for p in fig.axes[0].patches:
        heights[round(p.get_x() + p.get_width() / 2)] += p.get_height()
    want = [memory(shape, dataclasses.replace(layout, zero=z), 80.0)["total"] / 1e9 for z in range(4)]
    assert bars and np.allclose(heights, want, rtol=1e-12) and list(want) == sorted(want, reverse=True)
    plots._plt().close(fig)


def test_the_backtest_figure_draws_every_row_and_the_calibrated_line(backtest_json):
    """Every forecast of the backtest is a point at (decades, ln N* error), and the line is the
    calibration's drift per decade (``fit.backtest.calibrate`` on the same rows)."""
    from budgetopt.fit.backtest import calibrate

    res = json.loads(backtest_json.read_text())
    fig = plots.backtest(res)
    ax = fig.axes[0]
    pts = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets()) and c.get_offsets().ndim == 2
                          and c.get_offsets().shape[1] == 2 and type(c).__name__ == "PathCollection"])
    want = sorted((r["decades"], r["n_star_error"]) for r in res["backtest"])
    np.testing.assert_allclose(sorted(map(tuple, pts.tolist())), want, rtol=1e-12)
    line = ax.get_lines()[0]
    x, y = line.get_xdata(), line.get_ydata()
    assert y[-1] / x[-1] == pytest.approx(calibrate(res["backtest"], "2")["n_star_drift_per_decade"])
    plots._plt().close(fig)
