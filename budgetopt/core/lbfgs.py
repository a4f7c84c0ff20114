"""The package's one L-BFGS loop (optax), pure and vmappable: the fit's polish, the sweep's
refinement of its recommendation, Approach 3 on simulated ladders, the curve laws' fits, and the
benchmarks use it; and the one Huber loss the fits minimise. Nothing here knows a scaling law."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu


def lbfgs_minimize(theta0, fun, max_iter: int, tol: float):
    """Minimise ``fun`` from ``theta0`` with optax L-BFGS (zoom line search) until
    ||grad|| < tol or ``max_iter`` steps; pure and vmappable. Returns (x, f(x), ||grad||, steps)."""
    opt = optax.lbfgs()
    vg = optax.value_and_grad_from_state(fun)

    def step(carry):
        x, state = carry
        v, g = vg(x, state=state)
        u, state = opt.update(g, state, x, value=v, grad=g, value_fn=fun)
        return optax.apply_updates(x, u), state

    def go_on(carry):
        _, state = carry
        it = otu.tree_get(state, "count")
        err = otu.tree_norm(otu.tree_get(state, "grad"))
        return (it == 0) | ((it < max_iter) & (err >= tol))

    with jax.numpy_dtype_promotion("standard"):  # optax's L-BFGS adds its int32 index to an int64 arange
        x, state = jax.lax.while_loop(go_on, step, (theta0, opt.init(theta0)))
    v, g = jax.value_and_grad(fun)(x)
    return x, v, otu.tree_norm(g), otu.tree_get(state, "count")


def huber(r, delta):
    """Huber's loss of residuals ``r``: r²/2 within ``delta``, linear beyond (every fit's)."""
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
