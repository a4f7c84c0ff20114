"""The science, pure and jittable, backed by the package's data files. Modules, lowest first
(none imports a module after it):

- ``validity``: where a law was fitted, and how far an answer extrapolates;
- ``links``: loss -> downstream-metric links (Gadre et al.; Llama 3 / OLMo);
- ``laws``: the scaling laws as pytrees, their presets, and the one law draw from a prior;
- ``allocation``: the compute-optimal allocation: closed form, vmapped solver, duals;
- ``moe``: the mixture-of-experts laws' algebra (effective experts, FLOPs with the router,
  active/total counts) and the fine-grained law's vmapped solve;
- ``hardware``: the accelerator catalog and a ``Cluster`` (count x hours x MFU);
- ``shape``: a transformer's shape, parameter counts and FLOPs per token;
- ``moe_shape``: a routed transformer's exact total and active counts and FLOPs per token,
  and the catalog of released MoE architectures (``data/architectures.toml``);
- ``memory``: training memory per device under ZeRO, tensor/pipeline and expert parallelism;
- ``precision``: the precision law, the compute-optimal training precision, PTQ degradation.
"""

from ..core.lazy import lazy_face

__getattr__, __dir__, __all__ = lazy_face(__name__, {
    **dict.fromkeys(["Parametric", "Kaplan", "DataConstrained", "TokensPerParam", "LawSpec", "loss", "get_preset",
                     "preset_names", "resolve_law", "law_from_file", "law_from_params", "to_array_law", "draw_law"],
                    "laws"),
    **dict.fromkeys(["Budget", "Allocation", "ComputeForLoss", "allocate", "compute_for_loss", "log_compute_for_loss",
                     "optimal_loss"], "allocation"),
    **dict.fromkeys(["JointMoE", "FineGrainedMoE"], "laws"),
    **dict.fromkeys(["joint_at", "allocate_joint", "allocate_fine_grained"], "moe"),
    **dict.fromkeys(["Accelerator", "Cluster", "cluster_from", "get_accelerator", "load_catalog"], "hardware"),
    "Shape": "shape", "shape_for": "shape", "Layout": "memory", "MoEShape": "moe_shape",
    "architecture": "moe_shape",
})
