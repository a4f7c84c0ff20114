"""The Monte Carlo sweep: sample every uncertain input on the device, solve each sample's
optimal allocation, stream exactly mergeable summaries, and turn them into a robust decision.

One job per module, lower ones first (none imports a module after it):
- ``sampling``: sample i of a scenario as a pure function of (seed, i);
- ``state``: the typed accumulators of a sweep, their merge, checkpoints and JSON form;
- ``kernel``: the chunk kernel, split over local devices without collectives;
- ``pilot``: histogram ranges and candidate sizes from the first samples, optax refinement;
- ``decision``: the robust recommendation and its Monte Carlo error;
- ``results``: the user-facing summary, and the exact merge of shard files;
- ``driver``: the chunk loop, checkpoint/resume, shards and processes.
"""

from ..scenario import MAX_SAMPLES
from .driver import chunk_layout, default_chunk, fingerprint, parse_shard, prepare, run
from .kernel import LOG_QUANTITIES, QUANTITIES, candidate_loss, make_kernel, method, quantities, quantity_names, solve_samples
from .pilot import PILOT, Pilot, make_pilot
from .results import Labels, merge_results, summarise
from .sampling import STREAM, Draw, complete, law_sampler, make_sampler, sample_indices
from .state import CandidateStats, SweepState, empty_state

__all__ = ["run", "prepare", "merge_results", "parse_shard", "chunk_layout", "default_chunk", "fingerprint", "MAX_SAMPLES", "QUANTITIES",
           "LOG_QUANTITIES", "candidate_loss", "make_kernel", "method", "quantities", "quantity_names",
           "solve_samples", "PILOT", "Pilot", "make_pilot", "Labels", "summarise", "Draw", "STREAM", "complete", "make_sampler",
           "law_sampler",
           "sample_indices", "CandidateStats", "SweepState", "empty_state"]
