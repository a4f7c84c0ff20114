"""Tests run in float64 with strict dtype promotion (an accidental f32/f64 mix is an error);
float32 checks pass explicit float32 inputs."""

import os

os.environ.setdefault("BUDGETOPT_CACHE_DIR", "off")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Property tests and fuzzers (hypothesis): deterministic and bounded by default, so CI is
# reproducible and time-boxed; HYPOTHESIS_PROFILE=soak explores far more, with fresh randomness.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("soak", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
