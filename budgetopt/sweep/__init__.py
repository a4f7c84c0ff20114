"""The Monte Carlo sweep (`budgetopt sweep`, `merge`): sample every uncertain input on the
device, solve each sample's optimal allocation, stream exactly mergeable summaries, and turn
them into a robust decision.

Modules, lowest first (none imports a module after it):
- ``scenario``: a scenario TOML -> a validated ``Scenario``, errors named by TOML path;
- ``accumulators``: exactly mergeable counts, wide sums, minima, maxima and histograms;
- ``sampling``: sample i of a scenario as a pure function of (seed, i);
- ``state``: the typed accumulators of a sweep, their merge, checkpoints and JSON form;
- ``choices``: a discrete decision beside the size ([moe] expert counts, [precision] formats);
- ``kernel``: the chunk kernel, split over local devices without collectives;
- ``pilot``: histogram ranges and candidate sizes from the first samples, optax refinement;
- ``decision``: the robust recommendation and its Monte Carlo error;
- ``results``: the user-facing summary, the exact merge of shard files, the run plan;
- ``driver``: the chunk loop, checkpoint/resume, shards and processes.
"""

from ..core.lazy import lazy_face

__getattr__, __dir__, __all__ = lazy_face(__name__, {
    "Scenario": "scenario", "run": "driver", "parse_shard": "driver", "merge_results": "results",
})
