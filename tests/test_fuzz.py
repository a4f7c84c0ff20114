"""Fuzzing the input parsers (hypothesis; bounded by the profile in conftest.py).

Whatever the input — structured nonsense, mutated real files, random text or bytes — a parser
either returns a valid object or raises InputError (the CLI's clean exit-2 path). Any other
exception is a crash. A value that passes validation must also be usable: finite parameters,
draws inside the field's domain."""

from __future__ import annotations

import json
import math
import tempfile
from importlib import resources
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from budgetopt.cli.commands import app
from budgetopt.core.distributions import sample_log
from budgetopt.core.errors import InputError
from budgetopt.core.units import parse_number
from budgetopt.fit.runs import read_runs
from budgetopt.model.laws import law_from_file, preset_names
from budgetopt.sweep import scenario as scn

SCRATCH = Path(tempfile.mkdtemp(prefix="budgetopt-fuzz-"))

numbers_text = st.sampled_from(["1e23", "7B", "1.4T", "3.6e3pfd", "0.4", "-1", "0", "nan", "inf", "", "1e400",
                                "1_000", " 5 ", "5e", "0x10", "1e-400", "40%", "∞", "1.5.2"])
edge_floats = st.sampled_from([1e300, -1e300, 1e-300, 5e-324, 1.7e308, 3.4e38, 1e-45, 0.0, -0.0])
scalars = st.one_of(edge_floats,
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.text(max_size=12), numbers_text, st.dates(), st.floats(1e-3, 1e30),
)
DIST_KEYS = ["low", "high", "mean", "sd", "median", "sigma", "mode", "extra"]
dist_tables = st.fixed_dictionaries(
    {"dist": st.sampled_from(["uniform", "loguniform", "normal", "lognormal", "triangular", "gamma", "fixed"])},
    optional={k: st.one_of(st.floats(1e-4, 1e26), edge_floats, scalars) for k in DIST_KEYS})
values = st.one_of(scalars, dist_tables, st.lists(scalars, max_size=3), st.floats(1e-3, 1e24))


def section(keys: list[str]):
    return st.dictionaries(st.sampled_from(keys + ["bogus"]), values, max_size=len(keys) + 1)


law_tables = st.fixed_dictionaries({}, optional={
    "preset": st.one_of(st.sampled_from(preset_names() + ["nope"]), scalars),
    "params": st.one_of(st.dictionaries(st.sampled_from(["E", "A", "B", "alpha", "beta", "log_E", "gamma"]),
                                        st.one_of(st.floats(0.01, 1e4), scalars), max_size=7), scalars),
    "file": st.one_of(st.just("no-such-law.json"), scalars),
    "uncertainty": st.one_of(st.sampled_from(["none", "covariance", "bootstrap", "all"]), scalars),
    "ratio": st.one_of(st.floats(0.1, 100), scalars)})
budget_tables = st.one_of(
    st.fixed_dictionaries({"flops": values}, optional={"gpu": st.text(max_size=5)}),
    st.fixed_dictionaries({"gpu": st.one_of(st.sampled_from(["h100-sxm", "a100-80gb", "v100", "h200"]), scalars)},
                          optional={k: values for k in ("count", "hours", "days", "mfu", "dtype", "bogus")}),
    scalars)
documents = st.fixed_dictionaries({}, optional={
    "samples": st.one_of(st.integers(-5, 10**14), scalars), "seed": st.one_of(st.integers(-5, 2**32), scalars),
    "name": scalars, "law": st.one_of(law_tables, scalars), "budget": budget_tables,
    "data": section(["unique_tokens"]),
    "constraints": section(["max_params", "max_tokens", "max_epochs", "inference_tokens"]),
    "recommend": section(["candidates", "risk", "refine"]), "extra": scalars})


def check_scenario(sc: scn.Scenario) -> None:
    """A scenario that validates is usable: finite parameters, and draws from the extremes
    of every distribution stay finite in float32 and float64."""
    for name in ("flops", "count", "hours", "mfu", "unique_tokens", "max_params", "max_tokens", "max_epochs",
                 "inference_tokens"):
        d = getattr(sc, name)
        if d is None:
            continue
        assert all(math.isfinite(v) for v in (d.a, d.b, d.c)), (name, d)
        lo, hi, _ = scn.DOMAINS[name]
        for dt in (jnp.float32, jnp.float64):
            u = jnp.asarray([jnp.finfo(dt).eps, 0.5, 1 - jnp.finfo(dt).eps], dt)
            draws = np.asarray(sample_log(d, u, math.log(lo) if lo > 0 else -math.inf,
                                          math.log(hi) if hi < math.inf else math.inf), np.float64)
            assert np.all(np.isfinite(draws)), (name, d, dt, draws)
            assert np.all(np.exp(draws) <= hi * (1 + 1e-6)), (name, d, draws)


@given(documents)
def test_scenario_documents_validate_or_raise_input_error(doc):
    try:
        sc = scn.from_dict(doc, "fuzz", SCRATCH)
    except InputError:
        return
    check_scenario(sc)


EXAMPLES = [resources.files("budgetopt").joinpath(f"data/scenarios/{n}.toml").read_text() for n in scn.example_names()]
_PIECES = list('=[]{}"\'#.,-_ \n\t0123456789eEabcxyz\\') + ["nan", "inf", "1e999", "\x00", "é"]
mutations = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["insert", "delete", "replace"]),
                               st.sampled_from(_PIECES)), min_size=1, max_size=6)


def mutate(text: str, ops) -> str:
    for pos, op, s in ops:
        i = pos % (len(text) + 1)
        text = text[:i] + s + text[i:] if op == "insert" else text[:i] + (s if op == "replace" else "") + text[i + 1:]
    return text


def _load_text(data: bytes, name: str):
    path = SCRATCH / name
    path.write_bytes(data)
    return path


@given(st.sampled_from(EXAMPLES), mutations)
def test_mutated_example_scenarios_load_or_raise_input_error(text, ops):
    path = _load_text(mutate(text, ops).encode("utf-8", "surrogatepass"), "mutated.toml")
    try:
        sc = scn.load(path)
    except InputError:
        return
    check_scenario(sc)


@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_random_bytes_as_a_scenario(data):
    try:
        check_scenario(scn.load(_load_text(data, "random.toml")))
    except InputError:
        pass


# ---------------------------------------------------------------------------------------------- CSV

good_cells = st.floats(1.5, 1e12).map(lambda v: f"{v:.6g}")
junk_cells = st.one_of(numbers_text, st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
                       st.sampled_from(['"a,b"', "", "\r", '"', "1e8,2e9"]))
cells = st.one_of(good_cells, good_cells, good_cells, junk_cells)  # mostly parseable, so rows get past the first check
rows = st.one_of(st.lists(good_cells, min_size=3, max_size=4), st.lists(good_cells, min_size=3, max_size=4),
                 st.lists(cells, max_size=5))
tables = st.one_of(st.lists(rows, min_size=5, max_size=12), st.lists(rows, max_size=12))
headers = st.one_of(
    st.sampled_from([["params", "tokens", "loss"], ["params", "flops", "loss"], ["loss", "x", "params", "tokens"]]),
    st.permutations(["params", "tokens", "loss", "flops"]),
    st.lists(st.sampled_from(["params", "tokens", "flops", "loss", " loss ", "PARAMS", "x", "", '"tokens"']),
             max_size=5))


@given(headers, tables, st.sampled_from([",", ";", "\t", ", "]),
       st.sampled_from(["\n", "\r\n", "\r"]))
def test_run_csvs_parse_or_raise_input_error(header, rows, sep, eol):
    text = eol.join(sep.join(r) for r in [header] + rows) + eol
    path = _load_text(text.encode("utf-8", "surrogatepass"), "runs.csv")
    try:
        runs = read_runs(path)
    except InputError:
        return
    assert len(runs.log_n) == len(runs.log_d) == len(runs.log_l) >= 5
    assert all(np.all(np.isfinite(v)) for v in runs[:3])


@given(st.binary(max_size=300))
def test_random_bytes_as_a_csv(data):
    try:
        read_runs(_load_text(data, "bytes.csv"))
    except InputError:
        pass


# ---------------------------------------------------------------------------------------------- law files

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(-1e3, 1e3), st.integers(-10, 10**30),
                                     st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                   st.dictionaries(st.text(max_size=4), inner, max_size=4)),
                           max_leaves=40)
_law_value = st.one_of(st.floats(0.01, 5000), st.floats(0.01, 5000), json_values)
law_docs = st.tuples(
    st.fixed_dictionaries({k: _law_value for k in ("E", "A", "B", "alpha", "beta")}, optional={
        "log_A": _law_value, "name": json_values,
        "bootstrap": st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "draws": st.one_of(st.lists(st.lists(st.floats(-5, 10), min_size=5, max_size=5), max_size=4), json_values),
            "cov": st.one_of(st.lists(st.lists(st.floats(-1, 1), min_size=5, max_size=5), min_size=5, max_size=5),
                             json_values)}))}),
    st.sets(st.sampled_from(["E", "A", "B", "alpha", "beta"]), max_size=2),
).map(lambda t: {k: v for k, v in t[0].items() if k not in t[1]})  # sometimes a required key is missing


@given(st.one_of(law_docs, json_values))
def test_law_files_parse_or_raise_input_error(doc):
    path = _load_text(json.dumps(doc).encode(), "law.json")
    try:
        spec = law_from_file(path)
    except InputError:
        return
    assert all(math.isfinite(float(v)) for v in spec.params)
    assert 0 < float(spec.params.alpha) < 10 and 0 < float(spec.params.beta) < 10
    for m in (spec.draws, spec.covariance):
        assert m is None or (m.shape[1] == 5 and np.isfinite(m).all())


# ---------------------------------------------------------------------------------------------- numbers and flags

@given(st.one_of(st.text(max_size=20), numbers_text), st.sampled_from(["count", "flops", "plain"]))
def test_parse_number_returns_a_float_or_raises_input_error(text, units):
    try:
        v = parse_number(text, "--x", units=units)
    except InputError as e:
        assert e.field == "--x"
        return
    assert isinstance(v, float)


runner = CliRunner()
_num = lambda lo, hi: st.floats(lo, hi).map(lambda v: f"{v:.4g}")  # noqa: E731
PLAUSIBLE = {"--flops": _num(1e15, 1e28), "--mfu": _num(0.05, 1.0), "--count": st.integers(1, 100_000).map(str),
             "--hours": _num(1, 1e4), "--max-params": _num(1e6, 1e13), "--max-tokens": _num(1e8, 1e15),
             "--unique-tokens": _num(1e8, 1e14), "--max-epochs": _num(0.5, 100), "--inference-tokens": _num(1e6, 1e15),
             "--target-loss": _num(1.5, 5.0), "--price-per-hour": _num(0.0, 10.0)}
junk_values = st.one_of(numbers_text, st.text(max_size=6))


@st.composite
def optimize_args(draw):
    """Plausible values for a flops, hardware or target-loss budget plus up to three caps, so
    most runs get past validation into the solve; then, in a third of the examples, one flag's
    value replaced by junk."""
    mode = draw(st.sampled_from(["flops", "gpu", "target"]))
    names = {"flops": ["--flops"], "target": ["--target-loss"], "gpu": ["--count", "--hours", "--mfu"]}[mode]
    names += sorted(draw(st.sets(st.sampled_from(["--max-params", "--max-tokens", "--unique-tokens", "--max-epochs",
                                                  "--inference-tokens", "--price-per-hour", "--flops", "--mfu"]),
                                 max_size=3)))
    args = {n: draw(PLAUSIBLE[n]) for n in names}
    if draw(st.integers(0, 2)) == 0:
        args[draw(st.sampled_from(sorted(args)))] = draw(junk_values)
    if mode == "gpu":
        args["--gpu"] = "h100-sxm"
    law = draw(st.sampled_from([None, "hoffmann2022", "besiroglu2024", "muennighoff2023", "kaplan2020",
                                "tokens-per-param"]))
    out = ["optimize", "-f", "json"] + [x for kv in args.items() for x in kv]
    return out + (["--law", law] if law else [])


@given(optimize_args())
@pytest.mark.filterwarnings("ignore")
def test_optimize_flags_exit_0_1_or_2_cleanly(args):
    r = runner.invoke(app, args)
    assert r.exit_code in (0, 1, 2), (args, r.exit_code, r.stderr, r.exception)
    assert isinstance(r.exception, SystemExit) or r.exception is None, (args, repr(r.exception))
    if r.exit_code == 2:
        assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("error: ") and r.stdout == "", (args, r.stderr)
        return
    rec = json.loads(r.stdout)
    for k in ("params", "tokens", "flops"):
        assert isinstance(rec[k], (int, float)) and math.isfinite(rec[k]) and rec[k] > 0, (args, rec)
    if rec.get("loss") is not None:
        assert math.isfinite(rec["loss"]), (args, rec)
    # the answer spends the budget: 6 N D (+ 2 N D_inf serving) + what caps leave unused = C
    spent = 6 * rec["params"] * rec["tokens"] + 2 * rec["params"] * rec.get("inference_tokens",
                                                                            0.0) + rec.get("unused_flops", 0.0)
    assert spent == pytest.approx(rec["flops"], rel=1e-6), (args, rec)
    if r.exit_code == 1:
        assert rec["converged"] is False and "did not converge" in r.stderr


def _accepts(fn):
    def ok(x):
        try:
            fn(x)
            return True
        except InputError:
            return False
    return ok


def test_the_grammars_reach_past_validation():
    """A fuzzer whose inputs all fail the first check tests nothing: each grammar must be
    able to produce inputs the parser accepts (hypothesis.find searches for one)."""
    sc = find(documents, _accepts(lambda d: scn.from_dict(d, "fuzz", SCRATCH)),
              settings=settings(max_examples=5000, database=None))
    assert isinstance(sc, dict) and "budget" in sc
    text = find(st.tuples(headers, tables),
                _accepts(lambda hr: read_runs(_load_text("\n".join(",".join(r) for r in [hr[0]] + hr[1]).encode(),
                                                         "ok.csv"))),
                settings=settings(max_examples=5000, database=None))
    assert len(text[1]) >= 5
    law = find(law_docs, _accepts(lambda d: law_from_file(_load_text(json.dumps(d).encode(), "ok.json"))),
               settings=settings(max_examples=5000, database=None))
    assert {"E", "A", "B", "alpha", "beta"} <= set(law)
