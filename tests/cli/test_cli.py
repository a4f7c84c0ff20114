import json
import math

import pytest
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.model.hardware import Cluster, get_accelerator
from budgetopt.model.laws import get_preset, resolve_law
from budgetopt.plan.optimum import Constraints, optimize

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args):
    r = run(*args, "--format", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def assert_same(cli: dict, lib: dict):
    assert set(cli) == set(lib)
    for k, v in lib.items():
        if isinstance(v, float):
            assert cli[k] == pytest.approx(v, rel=1e-12, abs=1e-300), k
        else:
            assert cli[k] == v, k


def test_optimize_flops_matches_library():
    cli = run_json("optimize", "--flops", "5.76e23", "--law", "hoffmann2022")
    lib = optimize(get_preset("hoffmann2022"), flops=5.76e23)
    assert_same(cli, lib)
    for k in ("law", "flops", "pf_days", "params", "tokens", "loss", "tokens_per_param"):
        assert k in cli
    assert cli["flops"] == 5.76e23 and cli["pf_days"] == pytest.approx(5.76e23 / 8.64e19)
    assert cli["params"] * cli["tokens"] * 6 == pytest.approx(5.76e23, rel=1e-12)


def test_optimize_hardware_matches_library():
    cli = run_json("optimize", "--gpu", "a100-80gb", "--count", "512", "--days", "30", "--mfu", "0.4")
    hw = Cluster(get_accelerator("a100-80gb"), "bf16", 0.4, 512, 720)
    lib = optimize(resolve_law(), cluster=hw)
    assert_same(cli, lib)
    assert cli["flops"] == pytest.approx(512 * 312e12 * 0.4 * 720 * 3600, rel=1e-12)
    assert cli["gpu_hours"] == pytest.approx(512 * 720, rel=1e-12)
    assert cli["wall_days"] == pytest.approx(30.0, rel=1e-12)


def test_optimize_pf_days_and_suffixes():
    a = run_json("optimize", "--flops", "3.6e3pfd", "--max-params", "70B")
    assert a["flops"] == pytest.approx(3.6e3 * 8.64e19)
    assert a["params"] <= 70e9 * (1 + 1e-9)


def test_bloomberggpt_situation_from_the_cli():
    cli = run_json("optimize", "--flops", "2.36e23", "--unique-tokens", "5.69e11", "--law", "muennighoff2023")
    lib = optimize(get_preset("muennighoff2023"), flops=2.36e23, constraints=Constraints(unique_tokens=5.69e11))
    assert_same(cli, lib)
    assert cli["converged"] is True
    assert cli["epochs"] == pytest.approx(cli["tokens"] / 5.69e11)
    assert cli["epochs"] > 1  # repeating the scarce domain data is worth it
    assert cli["loss_penalty"] > 0
    assert cli["unused_flops"] == 0


def test_optimize_constraints_and_target_from_cli():
    cap = run_json("optimize", "--flops", "1e24", "--max-params", "1e10", "--max-tokens", "1e12")
    assert cap["params"] == pytest.approx(1e10) and cap["tokens"] == pytest.approx(1e12)
    assert cap["unused_flops"] == pytest.approx(1e24 - 6e22, rel=1e-9)
    assert cap["loss_penalty"] > 0
    inf = run_json("optimize", "--flops", "1e24", "--inference-tokens", "2e12")
    free = run_json("optimize", "--flops", "1e24")
    assert inf["params"] < free["params"] and inf["tokens_per_param"] > free["tokens_per_param"]
    assert inf["lifetime_flops"] == pytest.approx(1e24, rel=1e-9)
    t = run_json("optimize", "--target-loss", "2.0", "--gpu", "h100-sxm", "--count", "1024")
    lib = optimize(resolve_law(), target_loss=2.0,
                   cluster=Cluster(get_accelerator("h100-sxm"), "bf16", 0.4, 1024, None))
    assert_same(t, lib)
    assert t["loss"] == pytest.approx(2.0, rel=1e-9)
    assert t["wall_days"] == pytest.approx(t["flops"] / (1024 * 989e12 * 0.4 * 86400), rel=1e-9)


def test_optimize_table_and_csv_output(tmp_path):
    r = run("optimize", "--flops", "5.76e23")
    assert r.exit_code == 0 and "parameters N" in r.stdout and "besiroglu2024" in r.stdout
    out = tmp_path / "plan.csv"
    r = run("optimize", "--flops", "5.76e23", "--format", "csv", "-o", out)
    assert r.exit_code == 0 and r.stdout == ""
    head, row = out.read_text().splitlines()
    assert head.split(",")[:3] == ["law", "flops", "pf_days"]
    assert float(row.split(",")[1]) == 5.76e23


def test_convert():
    c = run_json("convert", "3.14e23", "--gpu", "a100-80gb", "--mfu", "0.4", "--count", "1024")
    assert c["flops"] == 3.14e23
    assert c["pf_days"] == pytest.approx(3.14e23 / 8.64e19)
    assert c["gpu_hours"] == pytest.approx(3.14e23 / (312e12 * 0.4 * 3600))
    assert c["wall_days"] == pytest.approx(c["gpu_hours"] / 1024 / 24)
    g = run_json("convert", "--params", "174.6B", "--tokens", "300B")
    assert g["flops"] == pytest.approx(3.14e23, rel=0.01) and g["pf_days"] == pytest.approx(3.64e3, rel=0.01)
    assert "gpu_hours" not in g
    t5 = run_json("convert", "--params", "3B", "--tokens", "1T", "--flops-per-param-token", "3")
    assert t5["pf_days"] == pytest.approx(1.04e2, rel=0.01)
    r = run("convert", "8.64e19", "--to", "pf-days")
    assert r.exit_code == 0 and float(r.stdout) == 1.0


def test_hardware_and_laws_listings():
    hw = run_json("hardware")
    assert {h["id"] for h in hw} >= {"v100", "a100-80gb", "h100-sxm", "tpu-v5p", "mi300x"}
    assert next(h for h in hw if h["id"] == "h200")["bf16_tflops"] == 989.0
    r = run("hardware")
    assert r.exit_code == 0 and "h100-sxm" in r.stdout
    r = run("hardware", "--format", "csv")
    assert r.stdout.splitlines()[0].startswith("id,name,fp32_tflops")
    laws = run_json("laws")
    by = {x["name"]: x for x in laws}
    assert by["hoffmann2022"]["a"] == pytest.approx(0.4516, abs=1e-4)
    assert by["besiroglu2024"]["uncertainty"] == "covariance"
    assert "kaplan2020" in by and "tokens-per-param" in by


def test_custom_law_from_cli(tmp_path):
    a = run_json("optimize", "--flops", "1e23", "--law-params", "E=1.69,A=406.4,B=410.7,alpha=0.34,beta=0.28")
    b = run_json("optimize", "--flops", "1e23", "--law", "hoffmann2022")
    assert a["params"] == pytest.approx(b["params"], rel=1e-12) and a["law"] == "custom"
    f = tmp_path / "law.json"
    f.write_text(json.dumps({"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}))
    c = run_json("optimize", "--flops", "1e23", "--law-file", f)
    assert c["params"] == pytest.approx(b["params"], rel=1e-12)


def test_unknown_gpu_suggests_closest():
    r = run("optimize", "--gpu", "h100", "--count", "8", "--hours", "24")
    assert "did you mean h100-sxm, h100-pcie" in r.stderr or "did you mean h100-pcie, h100-sxm" in r.stderr


def test_x64_flag_runs():
    r = run("optimize", "--flops", "1e23", "--x64", "--format", "json")
    assert r.exit_code == 0 and math.isfinite(json.loads(r.stdout)["loss"])
