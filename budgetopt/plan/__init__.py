"""One question, one answer: the commands that answer a planning question in one shot.
Modules, lowest first (none imports a module after it):

- ``optimum``: `budgetopt optimize` and `convert` — the compute-optimal allocation of a budget;
- ``moe_optimum``: `budgetopt optimize` with a mixture-of-experts law — the best expert count or
  granularity and its (N, D), beside the dense answer;
- ``precision_choice``: `budgetopt optimize --precision` — the training precision or format;
- ``launch``: `budgetopt plan` — from a budget to a launchable run (shape, memory, batch, time);
- ``audit``: `budgetopt audit` — was a trained model compute-optimal?
"""

from ..core.lazy import lazy_face

__getattr__, __dir__, __all__ = lazy_face(__name__, {
    "Constraints": "optimum", "optimize": "optimum", "convert": "optimum", "optimize_moe": "moe_optimum",
    "optimize_precision": "precision_choice", "choose_format": "precision_choice",
    "launch_plan": "launch",
    "audit_models": "audit", "select_models": "audit",
})
