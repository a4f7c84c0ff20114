"""Published law forms fitted from runs (`fit --form`, fit/forms.py): each form's loss against
its paper's formula written here in NumPy, constants recovered from exact synthetic runs and the
fitted law driving `optimize --law-file` as the preset does, and Clark et al.'s released routed
runs against an independent SciPy fit (skipped when ../shared/data is absent)."""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.fit import forms
from budgetopt.fit.runs import Table
from budgetopt.model.laws import get_preset

ROOT = Path(__file__).resolve().parents[2]
CLARK = ROOT.parent / "shared" / "data" / "moe" / "clark2022_routing_curves.csv.gz"
runner = CliRunner()


def e_hat(e, e_start, e_max):
    """Clark et al.'s saturating transform (their eq. 5; Ludziejewski et al.'s eq. 6)."""
    return 1.0 / (1.0 / (e - 1.0 + 1.0 / (1.0 / e_start - 1.0 / e_max)) + 1.0 / e_max)


def paper_loss(name: str, p: dict, v: dict) -> np.ndarray:
    """Each form as its paper prints it, in the published parameters and raw variables."""
    n = v["n"]
    if name == "gadre2024":
        return p["E"] + p["A"] * n ** -p["alpha"] + p["B"] * v["d"] ** -p["beta"]
    if name == "krajewski2024-moe":
        return p["c"] + (p["g"] / v["g"] ** p["gamma"] + p["a"]) * n ** -p["alpha"] + p["b"] * v["d"] ** -p["beta"]
    eh = e_hat(v["e"], p["e_start"], p["e_max"])
    if name == "ludziejewski2025-moe":
        le = np.log(eh)
        return (p["a"] * eh ** p["delta"] * n ** (p["alpha"] + p["gamma"] * le)
                + p["b"] * eh ** p["omega"] * v["d"] ** (p["beta"] + p["zeta"] * le) + p["c"])
    ln, le = np.log10(n), np.log10(eh)
    return 10.0 ** (p["a"] * ln + p["b"] * le + p["c"] * ln * le + p["d"])


def table(rng, name: str, size: int = 40) -> Table:
    values = {"n": np.exp(rng.uniform(np.log(1e7), np.log(1e10), size)),
              "d": np.exp(rng.uniform(np.log(1e9), np.log(1e12), size)),
              "e": rng.choice([1.0, 2.0, 8.0, 64.0, 512.0], size), "g": rng.choice([1.0, 2.0, 8.0, 64.0], size)}
    return Table({v: values[v] for v in forms.FORMS[name].variables}, np.zeros(size), np.arange(1, size + 1))


@pytest.mark.parametrize("name", list(forms.FORMS))
def test_each_form_is_its_papers_formula_in_centred_coordinates(name):
    """The fit works in N/N̄ and D/D̄; its loss at any point of the start box, mapped back by
    ``uncentred`` and ``reported``, is the paper's formula in the published parameters."""
    rng = np.random.default_rng(1)
    t = table(rng, name)
    import jax.numpy as jnp

    from budgetopt.core.runtime import jax_x64

    for theta in forms.starts(name, 16, seed=3):
        with jax_x64():
            got = np.exp(np.asarray(forms.log_loss(name, jnp.asarray(theta), jnp.asarray(forms.centred_x(name, t)))))
        p = forms.reported(name, forms.uncentred(name, theta, *forms.centres(t)))
        np.testing.assert_allclose(got, paper_loss(name, p, t.values), rtol=1e-10)


def synthetic_csv(path: Path, name: str, p: dict) -> Path:
    """Exact (noise-free) runs of form ``name`` with published parameters ``p`` on a grid."""
    grid = {"n": np.geomspace(5e7, 5e9, 5), "d": np.geomspace(1e9, 1e11, 5), "e": [1, 2, 4, 8, 16, 32, 64],
            "g": [1, 2, 4, 8, 16]}
    variables = forms.FORMS[name].variables
    names = {"n": "params", "d": "tokens", "e": "experts", "g": "granularity"}
    mesh = np.meshgrid(*(np.asarray(grid[v], float) for v in variables), indexing="ij")
    v = {k: m.ravel() for k, m in zip(variables, mesh)}
    loss = paper_loss(name, p, v)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([names[k] for k in variables] + ["loss"])
        w.writerows(np.column_stack([v[k] for k in variables] + [loss]).tolist())
    return path


def preset_constants(name: str) -> dict:
    if name == "gadre2024":
        p = get_preset("gadre2024-rpj").params
        return {"E": math.exp(p.log_E), "A": math.exp(p.log_A), "B": math.exp(p.log_B), "alpha": float(p.alpha),
                "beta": float(p.beta)}
    p = get_preset(name).params._asdict()
    if name == "ludziejewski2025-moe":
        p["a"], p["b"] = math.exp(p.pop("log_a")), math.exp(p.pop("log_b"))
    return {k: float(v) for k, v in p.items() if k in forms.FORMS[name].params}


OPTIMIZE = {"gadre2024": (["--law", "gadre2024-rpj"], []), "krajewski2024-moe": (["--law", "krajewski2024-moe"],
                                                                                 ["--granularity", "auto"]),
            "ludziejewski2025-moe": (["--law", "ludziejewski2025-moe"], ["--experts", "auto"])}


@pytest.mark.parametrize("name", ["gadre2024", "krajewski2024-moe", "ludziejewski2025-moe"])
def test_exact_runs_give_back_the_published_constants_and_the_presets_optimum(tmp_path, name):
    """Runs made exactly from a preset's constants: `fit --form` recovers every constant (to
    1e-6 relative), says it converged, and its `--law-out` file makes `optimize --law-file` give
    the preset's own answer — the fitted law is the law the planner uses."""
    truth = preset_constants(name)
    runs = synthetic_csv(tmp_path / "runs.csv", name, truth)
    law = tmp_path / "law.json"
    r = runner.invoke(app, ["fit", str(runs), "--form", name, "--law-out", str(law), "-f", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["converged"] and res["form"] == name
    for k, v in truth.items():
        assert res["params"][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
    preset, moe = OPTIMIZE[name]
    ask = ["optimize", "--flops", "1e22", *moe, "-f", "json"]
    fitted = json.loads(runner.invoke(app, [*ask, "--law-file", str(law)]).stdout)
    published = json.loads(runner.invoke(app, [*ask, *preset]).stdout)
    key = "params" if name == "gadre2024" else "params_active"
    assert fitted[key] == pytest.approx(published[key], rel=1e-5)
    assert fitted.get("experts") == published.get("experts") and fitted.get("granularity") == published.get(
        "granularity")


def test_an_moe_law_file_is_refused_where_dense_laws_are_needed(tmp_path):
    """A law file of the fine-grained kind (as `fit --form krajewski2024-moe --law-out` writes
    it) drives `optimize` like the preset, and `plan`, which shapes dense models and the joint
    law's routed ones only, refuses it and points to `optimize`."""
    consts = {**preset_constants("krajewski2024-moe"), "expansion": 64, "c_f": 6, "c_r": 14}
    law = tmp_path / "law.json"
    law.write_text(json.dumps({"form": "krajewski2024-moe", "kind": "moe-fine-grained", "constants": consts}))
    ask = ["optimize", "--flops", "1e22", "--granularity", "8", "-f", "json"]
    fitted = json.loads(runner.invoke(app, [*ask, "--law-file", str(law)]).stdout)
    assert fitted["loss"] == json.loads(runner.invoke(app, [*ask, "--law", "krajewski2024-moe"]).stdout)["loss"]
    r = runner.invoke(app, ["plan", "--flops", "1e22", "--law-file", str(law)])
    assert r.exit_code == 2 and "not a joint MoE law" in r.stderr and "`optimize`" in r.stderr


# ---------------------------------------------------------------------------- Clark et al.'s runs


def clark_runs() -> dict[str, dict[str, np.ndarray]]:
    """The paper's selection, written independently of budgetopt's reader: each run's final
    evaluation, routing frequency 0.5, k = 1, seed 42, the dense runs joined to every router."""
    with gzip.open(CLARK, "rt") as f:
        rows = list(csv.DictReader(f))
    last: dict[str, dict] = {}
    for r in rows:
        if r["hyper_id"] not in last or float(r["step"]) > float(last[r["hyper_id"]]["step"]):
            last[r["hyper_id"]] = r
    keep = [r for r in last.values() if float(r["routing_frequency"]) == 0.5 and r["k"] == "1" and r["seed"] == "42"]
    dense = [r for r in keep if r["router_type"] == "Dense"]
    out = {}
    for router in sorted({r["router_type"] for r in keep} - {"Dense"}):
        rs = dense + [r for r in keep if r["router_type"] == router]
        out[router] = {k: np.array([float(r[c]) for r in rs]) for k, c in
                       (("n", "dense_parameter_count"), ("e", "num_experts"), ("loss", "loss_validation"))}
    return out


def scipy_clark(data: dict, delta: float = 1e-3) -> tuple[np.ndarray, float]:
    """The same Huber objective in NumPy, minimised by SciPy's L-BFGS-B (numerical gradients)
    from 40 seeded starts, in Clark et al.'s own coordinates (a, b, c, d, log2 E_start,
    log2 E_max), as their released notebook fits."""
    ln, y = np.log10(data["n"]), np.log(data["loss"])

    def f(x):
        a, b, c, d, s, m = x
        es, em = 2.0 ** s, 2.0 ** m
        if not 1.0 / es - 1.0 / em > 0:
            return 1e3
        le = np.log10(e_hat(data["e"], es, em))
        r = math.log(10) * (a * ln + b * le + c * ln * le + d) - y
        return float(np.sum(np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))))

    rng = np.random.default_rng(0)
    best = None
    for x0 in rng.uniform([-0.15, -0.3, -0.02, 0.8, 0.0, 6.0], [-0.02, 0.0, 0.03, 1.6, 3.0, 10.0], (40, 6)):
        res = minimize(f, x0, method="L-BFGS-B", options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12})
        if best is None or res.fun < best.fun:
            best = res
    a, b, c, d, s, m = best.x
    return np.array([a, b, c, d, 2.0 ** s, 2.0 ** m]), float(best.fun)


@pytest.mark.skipif(not CLARK.exists(), reason="shared routed-model data not present")
def test_clark_routing_law_on_the_released_runs_matches_an_independent_scipy_fit():
    """`fit --form clark2022-routing` on the released .csv.gz as published (final steps,
    routing frequency 0.5, k 1, seed 42, dense runs as E = 1 in each router's fit): the same
    runs as an independent reading, and per router the parameters of an independent SciPy fit
    of the same objective (its objective never lower than ours)."""
    r = runner.invoke(app, ["fit", str(CLARK), "--form", "clark2022-routing", "--n-col", "dense_parameter_count",
                            "--e-col", "num_experts", "--loss-col", "loss_validation", "--group", "router_type",
                            "--baseline-group", "Dense", "--where", "routing_frequency=0.5", "--where", "k=1",
                            "--where", "seed=42", "--last", "hyper_id,step", "-f", "json"])
    assert r.exit_code == 0, r.output
    got = {rec["group"]: rec for rec in json.loads(r.stdout)}
    ref = clark_runs()
    assert set(got) == set(ref) == {"Hash", "RL-R", "S-Base"}
    for router, data in ref.items():
        rec = got[router]
        assert rec["n_runs"] == len(data["n"]) and rec["converged"]
        params, objective = scipy_clark(data)
        assert rec["objective"] <= objective * (1 + 1e-6)
        ours = np.array([rec["params"][k] for k in ("a", "b", "c", "d", "e_start", "e_max")])
        np.testing.assert_allclose(ours[:4], params[:4], rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(ours[4:], params[4:], rtol=2e-2)


def test_the_routing_form_projects_out_its_linear_coefficients():
    """`clark2022-routing` is linear in (a, b, c, d) at fixed (E_start, E_max): the fit projects
    them out (IRLS of the convex Huber regression) on a grid of the other two and polishes the
    grid's best points. (1) At a fixed (E_start, E_max) the projection equals SciPy's minimum of
    the same Huber objective over the four coefficients; (2) on noisy runs the fit reaches the
    objective of L-BFGS from the 256 seeded random starts (the generic path) or lower, at the
    same parameters."""
    import jax.numpy as jnp

    from budgetopt.core.runtime import jax_x64

    rng = np.random.default_rng(5)
    truth = {"a": -0.085, "b": -0.13, "c": 0.011, "d": 1.12, "e_start": 2.3, "e_max": 300.0}
    t = table(rng, "clark2022-routing", 60)
    t = Table(t.values, np.log(paper_loss("clark2022-routing", truth, t.values)) + rng.normal(0, 0.003, 60), t.rows)
    x = forms.centred_x("clark2022-routing", t)
    w = np.ones(60)
    phi = np.array([math.log(2.0), math.log(250.0)])
    with jax_x64():
        lin, obj = (np.asarray(v) for v in forms._routing_projection(jnp.asarray(phi), jnp.asarray(x),
                                                                        jnp.asarray(t.log_l), jnp.asarray(w), 1e-3))
        design = np.asarray(forms._routing_design(jnp.asarray(phi), jnp.asarray(x)))

    def huber_sum(theta):
        r = design @ theta - t.log_l
        return float(np.sum(np.where(np.abs(r) <= 1e-3, 0.5 * r * r, 1e-3 * (np.abs(r) - 5e-4))))

    ref = min((minimize(huber_sum, lin + rng.normal(0, s, 4), method="Powell",
                        options={"xtol": 1e-12, "ftol": 1e-15, "maxiter": 100_000}) for s in (0.0, 1e-3, 1e-2)),
              key=lambda r: r.fun)
    assert obj <= ref.fun * (1 + 1e-9) and obj == pytest.approx(huber_sum(lin), rel=1e-12)

    fit = forms.fit_form("clark2022-routing", {"all": t})["all"]
    assert fit["converged"] and fit["starts"] == forms.REPLICATE_STARTS
    with jax_x64():
        x3, ll, ww = forms._stack("clark2022-routing", [t], [np.ones((1, 60))])
        s0 = forms.starts("clark2022-routing")
        _, vals, grads, _ = forms._fit_batch("clark2022-routing", jnp.asarray(s0[None]), jnp.asarray(x3),
                                             jnp.asarray(ll), jnp.asarray(ww), 1e-3)
    generic = float(np.min(np.where(np.isfinite(np.asarray(grads)), np.asarray(vals), np.inf)))
    assert fit["objective"] <= generic * (1 + 1e-12)
    for k in ("a", "b", "c", "d"):
        assert fit["params"][k] == pytest.approx(truth[k], abs=0.02)
