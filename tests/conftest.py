"""Tests run in float64 with strict dtype promotion (an accidental f32/f64 mix is an error);
float32 checks pass explicit float32 inputs."""

import os

os.environ.setdefault("BUDGETOPT_CACHE_DIR", "off")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
