"""Rebuild budgetopt/data/model_error.toml from real isoFLOP ladders (DESIGN §17).

    python scripts/calibrate_model_error.py [--ladders ../shared/data/ladders/isoflops.csv] [--check]
        [--approach 2,vpnls]

Backtests every ladder of the file (`budgetopt fit --backtest --group experiment --c-col budget
--approach all`), then per approach fits the model error of a forecast — ln N* and the runs'
mean log loss off by (drift + sd z) x decades extrapolated, every ladder weighted alike
(``fit.backtest.calibrate``) — with 90 % intervals from resampling whole ladders. Writes the
package data file, or with --check compares the numbers with the stored ones (exit 1 when they
differ by more than 1e-9 relative). ``--approach`` checks some approaches' entries only (Approach
3's backtest is the 3-4 minutes; 2 and VPNLS take 20 s: the test suite checks those)."""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "data" / "ladders" / "isoflops.csv"
OUT = ROOT / "budgetopt" / "data" / "model_error.toml"
HEADER = """\
# The model error of a law fitted on a ladder, by decades extrapolated (DESIGN §17): on real
# isoFLOP ladders, each fitted on its budgets up to a cut-off and scored on every higher budget
# (`budgetopt fit --backtest`), the forecast ln N* and the runs' mean ln loss are off by
# (drift + sd z) x decades, z ~ N(0, 1). Errors are ln(forecast / reference): ln N* against the
# optimum the same approach fits with every run up to the forecast budget, ln loss against the
# runs there. Every ladder weighs the same; the _ci are 90 % intervals from resampling whole
# ladders. It rests on {ladders} ladders (Open-Athena's isoflops.csv: three Marin 2026-03 ladders,
# 3e18-3e20 FLOPs, and the (Mis)fitting ladder, 8.5e16-2.2e19) and at most {max_decades:.2f}
# decades: a rough, honest default, not a law of nature. Rebuilt by
# `python scripts/calibrate_model_error.py` (it also checks this file: --check).
"""


APPROACHES = ("2", "3", "vpnls")


def calibration(path: Path, backtest_json: Path | None = None, approaches=APPROACHES) -> dict[str, dict]:
    """The calibration of ``approaches`` from the ladders in ``path`` (or from the JSON of
    `budgetopt fit PATH --group experiment --c-col budget --backtest --approach all -f json`)."""
    import json

    from budgetopt.fit.backtest import backtest_file, calibrate, calibration_interval

    if backtest_json is not None:
        res = json.loads(backtest_json.read_text())
    elif tuple(approaches) == APPROACHES:
        res = backtest_file(path, approach="all", group=["experiment"], c_col="budget")
    else:  # each approach's backtest alone: the same rows as in "all"
        parts = [backtest_file(path, approach=a, group=["experiment"], c_col="budget") for a in approaches]
        res = {**parts[0], "backtest": [row for part in parts for row in part["backtest"]]}
    out = {}
    for a in approaches:
        rec = calibrate(res["backtest"], a)
        rec.update(calibration_interval(res["backtest"], a))
        rec["source"] = f"fit --backtest on {path.name}: {len(res['budgets'])} ladders, {rec['forecasts']} forecasts"
        out["approach" + a if a != "vpnls" else "vpnls"] = rec
    return out


def to_toml(cal: dict[str, dict]) -> str:
    first = next(iter(cal.values()))
    top = max(c["max_decades"] for c in cal.values())
    lines = [HEADER.rstrip("\n").format(ladders=first["ladders"], max_decades=top)]
    for name, rec in cal.items():
        lines.append(f"\n[{name}]")
        for k, v in rec.items():
            if k == "approach":
                continue
            if isinstance(v, str):
                lines.append(f'{k} = "{v}"')
            elif isinstance(v, list):
                lines.append(f"{k} = [{', '.join(repr(float(x)) for x in v)}]")
            else:
                lines.append(f"{k} = {v!r}")
    return "\n".join(lines) + "\n"


def differs(a, b) -> bool:
    if isinstance(a, dict):
        return set(a) != set(b) or any(differs(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) != len(b) or any(differs(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a != b


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ladders", type=Path, default=DEFAULT)
    p.add_argument("--check", action="store_true", help="compare with the stored file instead of writing it")
    p.add_argument("--backtest-json", type=Path, help="the backtest already run (`fit --backtest --approach all -f "
                   "json` on the same file): skips the 3-4 minutes of fits")
    p.add_argument("--approach", default=",".join(APPROACHES),
                   help="comma-separated approaches to calibrate (a subset only with --check)")
    args = p.parse_args(argv)
    approaches = tuple(a for a in APPROACHES if a in args.approach.split(","))
    if not approaches or set(args.approach.split(",")) - set(APPROACHES):
        print(f"error: --approach: must be a comma-separated subset of {', '.join(APPROACHES)}", file=sys.stderr)
        return 2
    if approaches != APPROACHES and not args.check:
        print("error: --approach: a subset only checks (writing it would drop the other entries); add --check",
              file=sys.stderr)
        return 2
    if not args.ladders.exists():
        print(f"error: --ladders: {args.ladders} not found", file=sys.stderr)
        return 2
    cal = calibration(args.ladders, args.backtest_json, approaches)
    if args.check:
        stored = {k: {kk: vv for kk, vv in v.items()} for k, v in tomllib.loads(OUT.read_text()).items() if k in cal}
        want = {k: {kk: vv for kk, vv in v.items() if kk != "approach"} for k, v in cal.items()}
        if differs(want, stored):
            print(f"{OUT} differs from the calibration of {args.ladders}", file=sys.stderr)
            return 1
        print(f"{OUT} reproduced")
        return 0
    OUT.write_text(to_toml(cal))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
