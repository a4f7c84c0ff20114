"""Loss curves (DESIGN §16): a run's whole curve, not only its last point. Modules, lowest first:

- ``schedules``: learning-rate schedules as specs (constant, cosine, WSD, two-stage) and every
  step's learning rate, or rebuilt from logged values;
- ``curve_laws``: the multi-power law (Luo et al. 2025) and the annealing-area law (Tissue et al.
  2024) evaluated on precomputed (step, changed step) pairs;
- ``curve_fit``: the Huber fit on log loss, multi-start L-BFGS vmapped over model sizes and
  moving-block bootstrap replicates;
- ``curve_files``: curves from CSV (one run per file or a run column), every bad cell named;
- ``curve_predict``: `budgetopt curves` — fit, score held-out curves, predict schedules with an
  interval that carries the law's measured error on held-out schedules.
"""

from ..core.lazy import lazy_face

__getattr__, __dir__, __all__ = lazy_face(__name__, {
    "Schedule": "schedules", "parse_schedule": "schedules", "learning_rates": "schedules",
    "LAWS": "curve_laws", "curve_pairs": "curve_laws",
    "Curve": "curve_fit", "fit_curve_groups": "curve_fit",
    "read_curve_files": "curve_files", "curves_result": "curve_predict",
})
