"""Independent float64 references written plainly in NumPy from the papers' formulas, in raw
N and D (not the package's log-space code), plus a brute-force minimiser."""

from __future__ import annotations

import numpy as np

R_D_STAR, R_N_STAR = 15.387756, 5.309743


def chinchilla(E, A, B, alpha, beta, N, D):
    return E + A / N**alpha + B / D**beta


def kaplan(Nc, Dc, aN, aD, N, D):
    return ((Nc / N) ** (aN / aD) + Dc / D) ** aD


def data_constrained(E, A, B, alpha, beta, N, D, U):
    UD = np.minimum(D, U)
    RD = np.maximum(D / UD - 1, 0)
    Dp = UD + UD * R_D_STAR * (1 - np.exp(-RD / R_D_STAR))
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    # compute-optimal N for D_opt = UD: C/6 = (G UD)^(1/b), N_opt = G (C/6)^a
    n_opt = G * (G * UD) ** (a / b)
    UN = np.minimum(N, n_opt)
    RN = np.maximum(N / UN - 1, 0)
    Np = UN + UN * R_N_STAR * (1 - np.exp(-RN / R_N_STAR))
    return chinchilla(E, A, B, alpha, beta, Np, Dp)


def brute_force_min(f, lo, hi, points=100_001, rounds=4):
    """argmin of f over [lo, hi] by a grid of ``points``, then zooming on the best cell
    ``rounds`` times (float64). Returns (x, f(x))."""
    for _ in range(rounds):
        xs = np.linspace(lo, hi, points)
        ys = f(xs)
        i = int(np.nanargmin(ys))
        step = xs[1] - xs[0]
        lo, hi = max(xs[0], xs[i] - 2 * step), min(xs[-1], xs[i] + 2 * step)
    xs = np.linspace(lo, hi, points)
    ys = f(xs)
    i = int(np.nanargmin(ys))
    return xs[i], ys[i]


def joint_moe_active_cap(M, E, T=0.0, V=50257.0, w=64.0):
    """Ludziejewski et al. 2025 eq. 9/10 on their shape (d_model = w n_blocks, vocabulary V): the
    active parameters N_act = 2dV + 13 d³/w of the widest model whose total 2dV + (4 + 9E) d³/w
    plus KV cache 2T d²/w (§4.3) fits M parameters. Newton on the increasing convex cubic from
    the root of its leading term (above the root), so it descends monotonically."""
    M = np.asarray(M, np.float64)
    k3, k2, k1 = (4.0 + 9.0 * E) / w, 2.0 * T / w, 2.0 * V
    d = (M / k3) ** (1 / 3)
    for _ in range(200):
        d = d - (k3 * d ** 3 + k2 * d ** 2 + k1 * d - M) / (3 * k3 * d ** 2 + 2 * k2 * d + k1)
    return 2.0 * d * V + 13.0 * d ** 3 / w
