"""WSD ladder designs (`budgetopt ladder --wsd`, ``schedule = "wsd"``): the cost of trunks and
cooldown branches against hand arithmetic, the snapped sizes against their isoFLOP curves, the
extra noise against its stated size, and the side-by-side comparison against the rows it reads."""

import dataclasses
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.cli.report import ladder_report
from budgetopt.fit import ladder
from budgetopt.model import laws
from budgetopt.model.laws import LawSpec, Parametric

CHIN = laws.resolve_law("besiroglu2024")
# alpha = beta: N*(C) grows as C^(1/2), so budgets 100x apart put their optima exactly a decade apart
EVEN = LawSpec("even", Parametric(math.log(400.0), math.log(400.0), math.log(1.7), 0.3, 0.3))
ALIGNED = ladder.Design("aligned", (1e18, 1e20), 3, math.sqrt(10.0))  # sizes half a decade apart


def test_wsd_cost_is_each_trunks_budget_plus_the_cooldown_share_of_its_branches():
    """Budgets 1e18 and 1e20, three sizes each half a decade apart, optima a decade apart: the
    1e18 curve's largest size is the 1e20 curve's smallest. Five trunks: four single points
    (C each) and one trained to 1e20 with a branch at 1e18 whose last 20 % decays."""
    wsd = ladder.wsd_twin(ALIGNED, 0.2)
    cost = ladder.design_cost(wsd, EVEN.params)
    assert cost.trunks == 5
    assert cost.cost == pytest.approx(3 * 1e20 + 2 * 1e18 + 0.2 * 1e18, rel=1e-12)
    assert cost.separate == pytest.approx(3 * 1e20 + 3 * 1e18, rel=1e-12) == ALIGNED.separate_cost
    # the same in 6·N·D: the shared size's trunk runs to D(1e20), its branch trains 20 % of D(1e18)
    n = np.exp(ladder.design_sizes(wsd, EVEN.params))
    assert n[0, 2] == pytest.approx(n[1, 0], rel=1e-12)
    d_max, d_branch = 1e20 / (6 * n[1, 0]), 1e18 / (6 * n[0, 2])
    assert 6 * n[1, 0] * d_max + 0.2 * 6 * n[0, 2] * d_branch == pytest.approx(1e20 + 0.2 * 1e18, rel=1e-12)
    twice = ladder.design_cost(dataclasses.replace(wsd, repeats=2), EVEN.params)
    assert (twice.cost, twice.trunks) == (pytest.approx(2 * cost.cost, rel=1e-12), 10)
    # a final-loss design costs its points as separate runs
    assert ladder.design_cost(ALIGNED, EVEN.params) == (ALIGNED.separate_cost, ALIGNED.separate_cost, 6)


@pytest.mark.parametrize("design", ladder.family(1e24)[::3], ids=lambda d: d.name)
def test_snapped_sizes_stay_on_their_curves_share_one_grid_and_cost_what_their_trunks_cost(design):
    """Every built-in design's WSD twin under the default law: each budget's sizes move together
    by at most half a step onto one grid of the design's own spacing, and the cost equals a
    brute-force grouping of the points by size (within 1e-9 in ln N) with C_max + 0.2·Σ others."""
    wsd = ladder.wsd_twin(design, 0.2)
    plain, snapped = ladder.design_sizes(design, CHIN.params), ladder.design_sizes(wsd, CHIN.params)
    step = 2 * math.log(design.spread) / (design.points - 1)
    shift = snapped - plain
    assert np.allclose(shift, shift[:, :1], atol=1e-9)  # a budget's sizes move together
    assert np.all(np.abs(shift) <= step / 2 + 1e-9)
    k = (snapped - snapped.min()) / step
    assert np.allclose(k, np.rint(k), atol=1e-9)  # one grid
    groups: list[tuple[float, list[float]]] = []
    for b, row in zip(design.budgets, snapped):
        for x in row:
            g = next((g for g in groups if abs(g[0] - x) < 1e-9), None)
            if g is None:
                groups.append((x, [b]))
            else:
                g[1].append(b)
    want = sum(max(c) + 0.2 * (sum(c) - max(c)) for _, c in groups)
    got = ladder.design_cost(wsd, CHIN.params)
    assert got.cost == pytest.approx(want, rel=1e-12) and got.trunks == len(groups)
    assert got.cost < got.separate  # the family's budgets share sizes: WSD is cheaper


def test_without_its_extra_noise_a_wsd_twin_on_an_aligned_grid_is_its_final_loss_design():
    """Snapping is a no-op on the aligned design and the twin reuses the final-loss design's noise
    draws (common random numbers): with --wsd-noise 0 the outcomes are the same — to 1e-6 in ln N*:
    the snapped sizes are recomputed on the grid, 4e-15 apart, which can move VPNLS's exponent grid
    search by its last zoom step (measured: 62 of 64 ladders within 1e-13, the worst 4.6e-7)."""
    wsd = ladder.wsd_twin(ALIGNED, 0.2)
    assert np.allclose(ladder.design_sizes(wsd, EVEN.params), ladder.design_sizes(ALIGNED, EVEN.params), atol=1e-12)
    out = ladder.simulate([ALIGNED, wsd], EVEN, "none", ladder.Noise(0.01, wsd_sigma=0.0), 1e24, 64)
    for f in ladder.Outcome._fields:
        a, b = getattr(out, f)
        assert np.allclose(a, b, rtol=0, atol=1e-6, equal_nan=True), f


def test_the_extra_noise_of_wsd_points_has_the_stated_size_and_is_independent_of_the_run_noise():
    """The WSD point's log loss minus its final-loss twin's, over 400 ladders x 6 points: mean 0,
    sd the --wsd-noise (within 5 %: 2400 draws), uncorrelated with the run noise."""
    import jax
    import jax.numpy as jnp

    from budgetopt.core.runtime import jax_x64

    designs = [ALIGNED, ladder.wsd_twin(ALIGNED, 0.2)]
    with jax_x64():
        tables = ladder.DesignTable(*(jnp.asarray(t) for t in ladder.design_table(designs, EVEN.params)))
        noise = ladder.Noise(0.01, wsd_sigma=0.004)
        cfg = ladder.Config(*(jnp.asarray(v) for v in ladder.make_config(EVEN, "none", noise, 1e24, 3)))
        idx = jnp.arange(400, dtype=jnp.uint32)
        draw = jax.vmap(lambda d, i: ladder.draw_ladder(d, i, tables, cfg, "none"), in_axes=(None, 0))
        final, wsd = draw(jnp.int32(0), idx), draw(jnp.int32(1), idx)
        truth = jnp.log(laws.loss(EVEN.params, final.log_n, final.log_d))
    w = np.asarray(final.w[0]) > 0
    extra = np.log(np.asarray(wsd.loss)) - np.log(np.asarray(final.loss))
    run = np.log(np.asarray(final.loss)) - np.asarray(truth)
    extra, run = extra[:, w], run[:, w]
    assert abs(extra.mean()) < 3 * 0.004 / math.sqrt(extra.size)
    assert extra.std() == pytest.approx(0.004, rel=0.05)
    assert run.std() == pytest.approx(0.01, rel=0.05)
    assert abs(np.corrcoef(extra.ravel(), run.ravel())[0, 1]) < 0.06


def test_the_calibrated_extra_noise_is_the_curve_laws_held_out_error_in_log_loss():
    from budgetopt.core.files import data_toml

    entry = data_toml("curve_law_error.toml")["form"]["multipower"]
    rows = entry["rows"]
    want = math.sqrt(np.mean([math.log1p(r["final_error"] / r["final_loss"]) ** 2 for r in rows]))
    assert entry["final_rms_log"] == pytest.approx(want, abs=1e-6)
    assert ladder.Noise().for_law(CHIN).wsd_sigma == entry["final_rms_log"]
    assert ladder.Noise(wsd_sigma=0.01).for_law(CHIN).wsd_sigma == 0.01


def test_wsd_versus_final_pairs_each_front_design_with_the_cheapest_wsd_design_as_good():
    designs = ladder.family(1e24)[16:]
    res = ladder.design_ladders(CHIN, 1e24, designs, prior="covariance", noise=ladder.Noise(0.005), ladders=100,
                                wsd=0.2)
    rows = {r["design"]: r for r in res["designs"]}
    assert len(rows) == 16 and all(f"{d.name}/wsd" in rows for d in designs)
    finals = [r for r in rows.values() if r["schedule"] == "final"]
    wsds = [r for r in rows.values() if r["schedule"] == "wsd"]
    pairs = res["wsd_versus_final"]
    assert pairs
    for q in pairs:
        f = rows[q["final"]]
        assert not any(g["cost_flops"] < f["cost_flops"] and g["regret_p95"] <= f["regret_p95"] for g in finals)
        ok = [w for w in wsds if w["regret_p95"] <= f["regret_p95_ci"][1]]
        if q["wsd"] is None:
            assert not ok
        else:
            assert q["wsd_cost_flops"] == min(w["cost_flops"] for w in ok)
            assert q["cost_ratio"] == pytest.approx(q["wsd_cost_flops"] / f["cost_flops"], rel=1e-12)
    # every final-loss design on the front is listed
    front = [f for f in finals if not any(g["cost_flops"] <= f["cost_flops"] and g["regret_p95"] < f["regret_p95"]
                                          for g in finals)]
    assert {q["final"] for q in pairs} == {f["design"] for f in front}
    # the report shows the comparison at 80 and 120 columns, no line wider
    for width in (80, 120):
        text = ladder_report(res, width)
        assert "at equal forecast quality" in text and "/wsd" in text
        assert max(len(line) for line in text.splitlines()) <= width


def test_cli_wsd_designs_from_flags_and_file_agree_with_the_library(tmp_path):
    f = tmp_path / "d.toml"
    f.write_text('[[design]]\nname = "small"\nbudgets = [1e18, 1e19, 1e20]\npoints = 5\nspread = 4\n'
                 '[[design]]\nname = "trunks"\nbudgets = [1e18, 1e19, 1e20]\npoints = 5\nspread = 4\n'
                 'schedule = "wsd"\ncooldown = 0.1\n')
    small, trunks = ladder.read_designs(f)
    assert (trunks.schedule, trunks.cooldown, small.schedule) == ("wsd", 0.1, "final")
    r = CliRunner().invoke(app, ["ladder", "--designs", str(f), "--ladders", "30", "--at", "1e23", "--wsd", "0.25",
                                 "--wsd-noise", "0.002", "--model-error", "none", "-f", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    names = [d["design"] for d in res["designs"]]
    assert names == ["small", "small/wsd", "trunks"]  # a WSD design has no twin
    lib = ladder.design_ladders(CHIN, 1e23, [small, trunks], ladders=30, noise=ladder.Noise(wsd_sigma=0.002), wsd=0.25)
    for got, want in zip(res["designs"], lib["designs"]):
        for k in ("cost_flops", "separate_cost_flops", "trunks", "regret_p95", "n_error_p95"):
            assert got[k] == pytest.approx(want[k], rel=1e-12), k
    assert res["designs"][1]["cooldown"] == 0.25 and res["designs"][2]["cooldown"] == 0.1
    assert res["noise"]["wsd_sigma"] == 0.002
    assert res["wsd_versus_final"] == lib["wsd_versus_final"]
    # --wsd-noise without a WSD design: a note that it does nothing
    f.write_text('[[design]]\nname = "small"\nbudgets = [1e18, 1e19, 1e20]\npoints = 5\nspread = 4\n')
    r = CliRunner().invoke(app, ["ladder", "--designs", str(f), "--ladders", "10", "--at", "1e23", "--wsd-noise",
                                 "0.002", "-f", "json"])
    assert r.exit_code == 0 and "--wsd-noise has no effect" in r.stderr


def test_the_ladder_figure_joins_each_wsd_design_to_its_final_loss_design():
    from budgetopt.cli import plots

    designs = [ladder.Design("a", (1e18, 1e19, 1e20), 5, 4.0), ladder.Design("b", (1e18, 1e19, 1e20), 3, 2.0)]
    res = json.loads(json.dumps(ladder.design_ladders(CHIN, 1e23, designs, prior="none", noise=ladder.Noise(0.01),
                                                      approach="2", ladders=20, wsd=0.2)))
    fig = plots.ladder(res)
    ax_r = fig.axes[1]
    rows = {r["design"]: r for r in res["designs"]}
    joins = {tuple(line.get_xdata()) for line in ax_r.get_lines()}
    for name in ("a", "b"):
        assert (rows[name]["cost_flops"], rows[f"{name}/wsd"]["cost_flops"]) in joins
    pts = np.vstack([c.get_offsets() for c in ax_r.collections if len(c.get_offsets())])
    for r in rows.values():
        assert np.any(np.all(np.isclose(pts, [r["cost_flops"], r["regret_p95"]], rtol=1e-9), axis=1)), r["design"]
    assert any(t.get_text().startswith("WSD trunks") for t in fig.legends[0].get_texts())
    plots._plt().close(fig)
