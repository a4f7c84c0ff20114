"""A team's runs: read them, fit laws to them, forecast from them, and design the ladder of
runs before training it. Modules, lowest first (none imports a module after it):

- ``runs``: a runs CSV as ``Runs``; the fitting approaches; padding and bootstrap weights;
- ``vpnls``: variable projection, vmapped over ladders (`fit --approach vpnls`);
- ``approach2``: isoFLOP parabolas (`fit --approach 2`);
- ``approach3``: the Huber fit from 4500 starts, with bootstrap (`fit --approach 3`);
- ``forms``: the published forms (over-training, the MoE laws, routing) fitted by multi-start
  L-BFGS, vmapped over starts, groups and replicates (`fit --form`);
- ``fitting``: `budgetopt fit` — one approach or all three, per group, with diagnostics;
- ``backtest``: `fit --backtest` — fit on the budgets up to each cut-off, score the forecasts of
  the higher ones, and the model error they calibrate;
- ``forecast``: `budgetopt forecast` — compute -> loss -> downstream metric, with an interval;
- ``ladder``: `budgetopt ladder` — which ladder of small runs to train, by simulation.
"""

from ..core.lazy import lazy_face

__getattr__, __dir__, __all__ = lazy_face(__name__, {
    "APPROACHES": "runs", "Runs": "runs", "read_groups": "runs", "read_table": "runs", "Table": "runs",
    "FORMS": "forms", "fit_form": "forms",
    "fit_file": "fitting", "fit_groups": "fitting", "fit_form_file": "fitting", "FitRecord": "fitting",
    "backtest_file": "backtest",
    "forecast_metric": "forecast", "forecast_file": "forecast", "forecast_preset": "forecast", "Forecast": "forecast",
    "design_ladders": "ladder", "Design": "ladder", "Noise": "ladder", "LadderDesigns": "ladder",
})
