#!/usr/bin/env python3
"""Synthetic training runs from a known parametric law, with noise, for trying `budgetopt fit`
and for the tests: isoFLOP grids (several model sizes at each of several compute budgets, as
in the Chinchilla paper's Approach 2 and Figure 4).

    python scripts/make_runs.py -o runs.csv [--law besiroglu2024] [--noise 0.005] [--seed 0]
    python scripts/make_runs.py -o runs.csv --law gadre2024-rpj --metric   # + avg_err column
    python scripts/make_runs.py -o ladders.csv --groups 3   # 3 ladders: + experiment, budget columns

Columns: params, tokens, flops, loss (and avg_err with --metric: the law's published link at
the noise-free loss, plus N(0, --metric-noise)). Loss noise is multiplicative: loss * exp(N(0, noise)).
With --groups K: K ladders in one file, as real ladder files hold them (an ``experiment`` column,
ladder-g; ladder g's law has alpha and beta + 0.02 g; a ``budget`` column, each curve's nominal
budget, 5 % above 6·N·D as real files state round budgets), for ``fit --group experiment --c-col
budget``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys

import numpy as np


def make_runs(E, A, B, alpha, beta, budgets=(1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21),
              sizes_per_budget=9, span=1.6, noise=0.005, seed=0):
    """Rows (N, D, C, L): at each budget C, sizes log-spaced over N_opt(C) * e^(+-span)."""
    rng = np.random.default_rng(seed)
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    a = beta / (alpha + beta)
    rows = []
    for c in budgets:
        n_opt = G * (c / 6) ** a
        for n in n_opt * np.exp(np.linspace(-span, span, sizes_per_budget)):
            d = c / (6 * n)
            loss = (E + A / n**alpha + B / d**beta) * math.exp(rng.normal(0, noise) if noise else 0.0)
            rows.append((n, d, c, loss))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", default="-")
    ap.add_argument("--law", default="besiroglu2024", help="a parametric preset of budgetopt")
    ap.add_argument("--noise", type=float, default=0.005)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", type=int, default=9, help="model sizes per compute budget")
    ap.add_argument("--metric", action="store_true",
                    help="add avg_err from the law's published link (e.g. gadre2024-rpj)")
    ap.add_argument("--metric-noise", type=float, default=0.005)
    ap.add_argument("--groups", type=int, default=0, help="K ladders in one file (experiment and budget columns)")
    args = ap.parse_args(argv)
    from budgetopt.model.laws import get_preset
    from budgetopt.model.links import predict_link

    spec = get_preset(args.law)
    if args.metric and spec.link is None:
        ap.error(f"--metric needs a law with a published link (gadre2024-rpj), not {args.law}")
    p = spec.params
    E, A, B = math.exp(p.log_E), math.exp(p.log_A), math.exp(p.log_B)
    rng = np.random.default_rng(args.seed + 1)
    out = sys.stdout if args.output == "-" else open(args.output, "w", newline="")
    w = csv.writer(out)
    grouped = ["experiment", "budget"] if args.groups else []
    w.writerow(["params", "tokens", "flops", "loss"] + (["avg_err"] if args.metric else []) + grouped)
    for g in range(max(args.groups, 1)):
        al, be = p.alpha + 0.02 * g, p.beta + 0.02 * g
        rows = make_runs(E, A, B, al, be, sizes_per_budget=args.sizes, noise=args.noise, seed=args.seed + g)
        for r in rows:
            extra = []
            if args.metric:
                clean = E + A / r[0] ** al + B / r[1] ** be
                extra = [f"{float(predict_link(spec.link, clean)) + rng.normal(0, args.metric_noise):.6f}"]
            if args.groups:
                extra += [f"ladder-{g}", f"{1.05 * r[2]:.6g}"]
            w.writerow([f"{v:.6g}" for v in r[:3]] + [f"{r[3]:.6f}"] + extra)
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
