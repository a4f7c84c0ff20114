"""Tests run in float64 with strict dtype promotion (an accidental f32/f64 mix is an error);
float32 checks pass explicit float32 inputs."""

import atexit
import os
import shutil
import tempfile

# The jaxtyping annotations are checked at run time (as optimistix does): every budgetopt
# function is wrapped with beartype when imported, so a wrong shape or dtype is an error in
# tests. Installed before anything imports budgetopt; skipped where beartype is absent (the
# accelerator image runs scripts/gpu_check.sh without the dev extra).
try:
    import beartype  # noqa: F401
    from jaxtyping import install_import_hook
except ImportError:
    TYPECHECKED = False
else:
    # the PEP 484 numeric tower: an int is a valid float, as Python callers expect
    install_import_hook("budgetopt", "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))")
    TYPECHECKED = True

# Tests run the way users run: with JAX's persistent compile cache on. A fresh directory per
# test session (0700, as the CLI requires); child processes inherit it, so later runs load the
# executables earlier ones compiled — the path on which a 1e7-sample sweep once aborted.
# (pytest-xdist workers inherit the controller's directory.)
if "PYTEST_XDIST_WORKER" not in os.environ or "BUDGETOPT_TEST_CACHE" not in os.environ:
    os.environ["BUDGETOPT_TEST_CACHE"] = tempfile.mkdtemp(prefix="budgetopt-test-cache-")
    atexit.register(shutil.rmtree, os.environ["BUDGETOPT_TEST_CACHE"], ignore_errors=True)
os.environ["BUDGETOPT_CACHE_DIR"] = os.environ["BUDGETOPT_TEST_CACHE"]

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Property tests and fuzzers (hypothesis): deterministic and bounded by default, so CI is
# reproducible and time-boxed; HYPOTHESIS_PROFILE=soak explores far more, with fresh randomness.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # a bare accelerator image (scripts/gpu_check.sh runs no file that needs it)
    settings = None
if settings is not None:
    settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, database=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    settings.register_profile("soak", max_examples=3000, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_CONFIG = ("jax_enable_x64", "jax_numpy_dtype_promotion", "jax_compilation_cache_dir",
           "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture(autouse=True)
def _restore_global_state():
    """JAX's config and XLA_FLAGS as they were before each test: an in-process CLI call sets
    precision and device flags for the process, and must not leak into the next test."""
    saved = {k: getattr(jax.config, k) for k in _CONFIG}
    flags = os.environ.get("XLA_FLAGS")
    yield
    for k, v in saved.items():
        if getattr(jax.config, k) != v:
            jax.config.update(k, v)
    if flags is None:
        os.environ.pop("XLA_FLAGS", None)
    else:
        os.environ["XLA_FLAGS"] = flags
