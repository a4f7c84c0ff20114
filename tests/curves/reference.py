"""Independent float64 NumPy references for the curve laws and schedules, written from the
official multi-power-law code (thu-yao-01-luo/MultiPowerLaw: src/models.py ``MPL.forward``,
src/lr_schedules.py) and Tissue et al. 2024 eq. 5 — loops, no pairs, no merging."""

from __future__ import annotations

import numpy as np

#: the official code's fitted parameters (src/config.py PARAMS) [L0, A, alpha, B, C, beta, gamma]
OFFICIAL = {"25": [3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257],
            "100": [2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644]}


def multipower(params, lrs: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """MPL.forward's prediction, step by step as the official code writes it."""
    l0, a, alpha, b, c, beta, gamma = params
    lr_sum = np.cumsum(lrs)
    lr_gap = np.zeros_like(lrs)
    lr_gap[1:] = np.diff(lrs)
    out = []
    for s in steps:
        ld = np.sum(lr_gap[1:s + 1] * (1 - (1 + c * lrs[1:s + 1] ** (-gamma) * (lr_sum[s] - lr_sum[:s])) ** (-beta)))
        out.append(l0 + a * lr_sum[s] ** (-alpha) + b * ld)
    return np.array(out)


def annealing(params, lrs: np.ndarray, steps: np.ndarray, decay: float = 0.999) -> np.ndarray:
    """L0 + A S1^-alpha - C S2, S2 = sum of m_i, m_i = decay m_(i-1) + (eta_(i-1) - eta_i)."""
    l0, a, alpha, c = params
    m, s2, acc = 0.0, np.zeros(len(lrs)), 0.0
    for i in range(len(lrs)):
        m = decay * m + (lrs[i - 1] - lrs[i] if i else 0.0)
        acc += m
        s2[i] = acc
    return l0 + a * np.cumsum(lrs)[steps] ** (-alpha) - c * s2[steps]


def official_lrs(kind: str, warmup: int, total: int, peak: float, end: float = 0.0, decay: int = 0,
                 lr_b: float = 0.0, stage_a: int = 0) -> np.ndarray:
    """The official src/lr_schedules.py functions (linear warmup)."""
    warm = np.linspace(0, peak, warmup)
    if kind == "cosine":
        step = np.arange(total)[warmup:]
        cos = end + 0.5 * (peak - end) * (1 + np.cos(np.pi * (step - warmup) / (total - warmup)))
        return np.concatenate((warm, cos))
    if kind == "constant":
        return np.concatenate((warm, np.full(total - warmup, peak)))
    if kind == "two-stage":
        return np.concatenate((warm, np.full(stage_a - warmup, peak), np.full(total - stage_a, lr_b)))
    step = np.arange(total)[decay:]
    if kind == "wsd":  # geometric
        d = peak ** ((total - step) / (total - decay)) * end ** ((step - decay) / (total - decay))
    else:  # wsdld: linear
        d = peak * (1 - (step - decay) / (total - decay)) + end * (step - decay) / (total - decay)
    return np.concatenate((warm, np.full(decay - warmup, peak), d))
