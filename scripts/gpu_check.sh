#!/usr/bin/env bash
# The accelerator check: on a machine with an NVIDIA GPU and jax[cuda], optax, typer, rich,
# matplotlib, numpy and pytest (nothing else is installed; the package runs from the source
# tree). Runs the GPU-relevant tests (float64 via the tests' x64, float32 paths explicitly),
# then the benchmarks at GPU sizes (1e9 samples), and prints a short table last.
#   bash scripts/gpu_check.sh            # add --record to append figures to benchmarks/RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
# Correctness on the device: allocation (f64 and f32), generator, sweep determinism and the
# decision against NumPy, the typed state, the ladder simulation (zero-noise recovery, Approach 2's
# closed-form bias, bit-identical chunks). (One process owns the GPU: no -n here.)
"$PY" -m pytest -q -x -p no:cacheprovider tests/model/test_allocation.py tests/core/test_distributions.py tests/model/test_laws.py \
  tests/sweep/test_sweep.py tests/sweep/test_sweep_engine.py tests/fit/test_ladder.py -m "not slow"
# Benchmarks at accelerator sizes; the closing summary table is printed last.
"$PY" benchmarks/run.py --gpu "$@"
