"""`optimize --precision`: under the precision law, the compute-optimal bits (and a fixed
precision's optimum) against the closed form written here; under a dense law on a device, the
choice among its floating-point formats against brute force over the formats — each format's
compute (BF16 booking x its speed-up, never the peak ratio unless the user says so), its
optimum and its penalised loss computed in NumPy from the law."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.core.files import data_toml
from budgetopt.model.hardware import cluster_from

from .. import reference as ref

runner = CliRunner()
BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
FORMATS = data_toml("precision_formats.toml")


def run(*args) -> dict:
    r = runner.invoke(app, ["optimize", *args, "-f", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def closed_form(law: dict, c: float, a_scale: float = 1.0, token_factor: float = 1.0) -> tuple[float, float, float]:
    """(N, D, L) of the Chinchilla law (A times ``a_scale``; D counted as D / ``token_factor``)
    at C = 6ND, written out."""
    A, B, al, be = law["A"] * a_scale, law["B"] * token_factor ** law["beta"], law["alpha"], law["beta"]
    g = (al * A / (be * B)) ** (1 / (al + be))
    n = g * (c / 6) ** (be / (al + be))
    d = c / (6 * n)
    return n, d, ref.chinchilla(law["E"], A, B, al, be, n, d)


@pytest.mark.parametrize("gpu", ["h100-sxm", "b200"])
def test_the_format_choice_is_the_brute_force_over_the_devices_formats(gpu):
    """Empirical penalties: loss = L*(C x speed-up) x (1 + penalty) for every format the device
    has (H100: bf16, fp8; B200: bf16, fp8, fp4, mxfp4 — MXFP4 at NVFP4's speed-up, its D worth
    D / 1.36); the least is chosen."""
    res = run("--gpu", gpu, "--count", "1024", "--days", "30", "--precision", "auto")
    bf16 = cluster_from(gpu, count=1024, days=30)[0].flops()
    speed = {"bf16": 1.0, "fp8": 1.34, "fp4": 1.34 * 1.31, "mxfp4": 1.34 * 1.31}  # the sources' numbers
    tokens = {"mxfp4": 1.36}
    want = {}
    for f, e in FORMATS.items():
        if gpu == "h100-sxm" and f in ("fp4", "mxfp4"):
            continue
        n, d, loss = closed_form(BESIROGLU, bf16 * speed[f], token_factor=tokens.get(f, 1.0))
        want[f] = (n, d, loss * (1 + e["loss_penalty"]))
    got = {r["format"]: r for r in res["precisions"]}
    assert set(got) == set(want)
    for f, (n, d, loss) in want.items():
        assert got[f]["flops"] == pytest.approx(bf16 * speed[f], rel=1e-4)  # fp4's 1.7554 rounds 1.34 x 1.31
        assert got[f]["tokens"] == pytest.approx(d, rel=1e-3)
        assert got[f]["params"] == pytest.approx(n, rel=1e-3)  # the published constants are rounded (4 digits)
        assert got[f]["loss"] == pytest.approx(loss, rel=1e-4)
    best = min(want, key=lambda f: want[f][2])
    assert res["precision"] == best and res["precision_bits"] == FORMATS[best]["bits"]


def test_the_law_penalty_scales_a_by_the_effective_parameters_relative_to_16_bits():
    """--precision-penalty law: at fp8 the dense law's A becomes A (F(8)/F(16))^-alpha with F the
    precision law's offset-form factor product, written out here."""
    res = run("--gpu", "h100-sxm", "--count", "256", "--days", "20", "--precision", "auto", "--precision-penalty",
              "law")
    k = data_toml("laws.toml")["kumar2024-precision"]

    def big_f(p):
        return math.prod(max(0.0, 1 - math.exp(k[f"n_{x}"] - p / k[f"gamma_{x}"])) for x in ("w", "a", "kv"))

    bf16 = cluster_from("h100-sxm", count=256, days=20)[0].flops()
    fp8 = next(r for r in res["precisions"] if r["format"] == "fp8")
    scale = (big_f(8) / big_f(16)) ** -BESIROGLU["alpha"]
    _, _, loss = closed_form(BESIROGLU, bf16 * FORMATS["fp8"]["speedup"], scale)
    assert fp8["loss"] == pytest.approx(loss, rel=1e-4)
    empirical = run("--gpu", "h100-sxm", "--count", "256", "--days", "20", "--precision", "fp8")
    assert fp8["loss_penalty"] > empirical["precisions"][0]["loss_penalty"]  # integer training prices FP8 higher
    assert any("over-states" in w for w in res["warnings"])


def test_the_fp8_speedup_is_never_the_peak_ratio_unless_the_user_sets_it():
    res = run("--gpu", "h100-sxm", "--count", "64", "--days", "10", "--precision", "fp8")
    (row,) = res["precisions"]
    assert row["speedup"] == FORMATS["fp8"]["speedup"] != 2.0 and not row["speedup_given"]
    given = run("--gpu", "h100-sxm", "--count", "64", "--days", "10", "--precision", "fp8", "--fp8-speedup", "2")
    assert given["precisions"][0]["speedup"] == 2.0 and given["precisions"][0]["speedup_given"]
    assert given["flops"] == pytest.approx(2 * cluster_from("h100-sxm", count=64, days=10)[0].flops(), rel=1e-12)


def test_the_precision_law_at_fixed_bits_is_its_closed_form():
    """`--law kumar2024-precision --precision 8`: the Chinchilla form with A (f_w f_a f_kv)^-alpha
    on 6ND = C x 16/8; `--precision fp8` is the same 8 bits; auto finds ~7 bits with a lower loss."""
    k = data_toml("laws.toml")["kumar2024-precision"]
    fac = math.prod(max(0.0, 1 - math.exp(k[f"n_{x}"] - 8 / k[f"gamma_{x}"])) for x in ("w", "a", "kv"))
    law = {"E": k["E"], "A": k["A"], "B": k["B"], "alpha": k["alpha"], "beta": k["beta"]}
    n, d, loss = closed_form(law, 1e21 * 2, fac ** -k["alpha"])
    for p in ("8", "fp8"):
        res = run("--law", "kumar2024-precision", "--flops", "1e21", "--precision", p)
        assert res["precision_bits"] == 8.0
        assert res["params"] == pytest.approx(n, rel=1e-9) and res["loss"] == pytest.approx(loss, rel=1e-9)
    auto = run("--law", "kumar2024-precision", "--flops", "1e21")
    assert 7 <= auto["precision_bits"] <= 8 and auto["loss"] < loss and auto["converged"]
    main = run("--law", "kumar2024-precision", "--flops", "1e21", "--precision-form", "main-text")
    assert 3 <= main["precision_bits"] <= 4


def test_the_audit_prices_serving_quantisation_by_the_precision_law():
    """`audit --serve-precision 4`: δ_PTQ = C_T D^γ_D N^-γ_N e^(-P/γ_post) at each model's (N, D)
    and D_crit of eq. 13, written out; Llama 3 70B's 15T tokens lie 12x past its 4-bit critical
    tokens (1.26T; Chinchilla's 1.4T just past), and the over-trained model pays 3x more."""
    r = runner.invoke(app, ["audit", "--model", "llama-3-70b", "--model", "chinchilla", "--serve-precision", "4",
                            "-f", "json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    k = data_toml("laws.toml")["kumar2024-precision"]
    for name, n, d in (("Llama 3 70B", 70e9, 15e12), ("Chinchilla 70B", 70e9, 1.4e12)):
        want = k["c_t"] * d ** k["gamma_d"] / n ** k["gamma_n"] * math.exp(-4 / k["gamma_post"])
        crit = (k["beta"] * k["B"] * n ** k["gamma_n"] * math.exp(4 / k["gamma_post"]) / (k["gamma_d"] * k["c_t"])
                ) ** (1 / (k["gamma_d"] + k["beta"]))
        assert rows[name]["ptq_degradation"] == pytest.approx(want, rel=1e-9)
        assert rows[name]["critical_tokens"] == pytest.approx(crit, rel=1e-9)
    assert rows["Llama 3 70B"]["past_critical_tokens"] == (15e12 > rows["Llama 3 70B"]["critical_tokens"])
    assert rows["Llama 3 70B"]["past_critical_tokens"]
    assert rows["Llama 3 70B"]["ptq_degradation"] > 3 * rows["Chinchilla 70B"]["ptq_degradation"]


def test_a_plan_in_fp8_does_the_bf16_work_faster_and_keeps_bf16_memory():
    """`plan --precision fp8` on a booking: the run's hardware FLOPs are the BF16 booking's times
    the FP8 speed-up (the booking is still spent exactly), the states per parameter those of BF16
    mixed precision (the stated convention), and the format's empirical penalty reported."""
    args = ["plan", "--gpu", "h100-sxm", "--count", "512", "--days", "20", "-f", "json"]
    bf16 = json.loads(runner.invoke(app, args).stdout)
    r = runner.invoke(app, [*args, "--precision", "fp8"])
    assert r.exit_code == 0, r.output
    fp8 = json.loads(r.stdout)
    booking = cluster_from("h100-sxm", count=512, days=20)[0].flops()
    assert bf16["hardware_flops"] == pytest.approx(booking, rel=1e-9)
    assert fp8["hardware_flops"] == pytest.approx(booking * FORMATS["fp8"]["speedup"], rel=1e-9)
    assert fp8["wall_days"] == pytest.approx(20.0, rel=1e-9) and fp8["fits_booking"]
    assert fp8["params"] > bf16["params"]
    per_param = lambda p: p["memory"]["weights"] * p["layout"]["tp"] * p["layout"]["pp"] / p["params"]  # noqa: E731
    assert per_param(fp8) == pytest.approx(2.0) == pytest.approx(per_param(bf16))
    assert fp8["precision"]["loss_penalty"] == pytest.approx(fp8["loss"] * FORMATS["fp8"]["loss_penalty"], rel=1e-12)
    table = runner.invoke(app, args[:-2] + ["--precision", "fp8"], env={"COLUMNS": "100"})
    assert table.exit_code == 0 and "training format" in table.stdout


def test_mxfp4_runs_at_nvfp4s_speed_and_needs_more_tokens():
    """MXFP4 shares NVFP4's speed-up (the default and --fp4-speedup) and needs 1.36x the tokens
    for the same loss: its optimum is the closed form of the law in D / 1.36 (B times 1.36^beta)
    written out, times (1 + its bound)."""
    from budgetopt.model.hardware import Cluster, get_accelerator
    from budgetopt.plan.precision_choice import training_format

    cl = Cluster(get_accelerator("b200"), "bf16", 0.4, 8, 24.0)
    assert training_format("mxfp4", cl)["speedup"] == training_format("fp4", cl)["speedup"] == FORMATS["fp4"]["speedup"]
    assert training_format("mxfp4", cl, {"fp4": 2.0})["speedup"] == 2.0
    assert training_format("mxfp4", cl)["token_factor"] == 1.36 and training_format("fp4", cl)["token_factor"] == 1.0
    res = run("--gpu", "b200", "--count", "8", "--days", "1", "--mfu", "0.4", "--precision", "mxfp4")
    row = res["precisions"][0]
    _, d, loss = closed_form(BESIROGLU, cl.flops() * FORMATS["fp4"]["speedup"], token_factor=1.36)
    assert row["format"] == "mxfp4" and row["token_factor"] == 1.36
    assert row["tokens"] == pytest.approx(d, rel=1e-3)
    assert row["loss"] == pytest.approx(loss * (1 + FORMATS["mxfp4"]["loss_penalty"]), rel=1e-4)
