"""refit: move a model's weights from one Megatron parallel layout into another,
in place, over caller-owned PyTorch (or NumPy) tensors.

The API is Megatron-LM's ``megatron.core.resharding.refit``
(``prepare_swap_model_weights``, ``swap_model_weights``,
``reshard_model_weights``, ``get_or_create_service``, ``clear_*_cache``), over
:class:`ShardedModel` objects that hold each rank's tensors by reference:

>>> spec = refit.ModelSpec.from_config("data/checkpoints/agilerl-tiny-qwen3-moe")
>>> src = [refit.ShardedModel(spec, "tp=2,ep=2", r, 4, trainer_tensors[r]) for r in range(4)]
>>> dst = [refit.ShardedModel(spec, "tp=1,ep=4", r, 4, engine_tensors[r]) for r in range(4)]
>>> reports = refit.swap_model_weights(src, dst, "local")   # plans once, then only moves bytes

Errors: ValueError (bad input: layout, shape, dtype, strides, transform),
KeyError (a missing tensor), RefitTimeoutError (a peer made no progress for
the timeout), RefitError (anything else). A refit that raises changed no
destination byte, on any rank.
"""

from ._refit import (
    CudaIpcGroup,
    LocalGroup,
    ModelSpec,
    MpiGroup,
    NcclGroup,
    ParallelLayout,
    RefitError,
    RefitTimeoutError,
    ShardedModel,
    SocketGroup,
    SwapReport,
    have_cuda_ipc,
    have_mpi,
    have_nccl,
    rank_coordinates,
    shard_shapes,
)
from ._shards import empty_shards, load_shards, torch_dtype
from ._swap import (
    CopyService,
    clear_all_caches,
    clear_plan_cache,
    clear_service_cache,
    get_or_create_service,
    prepare_swap_model_weights,
    reshard_model_weights,
    swap_model_weights,
)
from .receiver import WeightReceiver

__all__ = [
    "CudaIpcGroup",
    "CopyService",
    "LocalGroup",
    "ModelSpec",
    "MpiGroup",
    "NcclGroup",
    "ParallelLayout",
    "RefitError",
    "RefitTimeoutError",
    "ShardedModel",
    "SocketGroup",
    "SwapReport",
    "WeightReceiver",
    "clear_all_caches",
    "clear_plan_cache",
    "clear_service_cache",
    "empty_shards",
    "get_or_create_service",
    "have_cuda_ipc",
    "have_mpi",
    "have_nccl",
    "rank_coordinates",
    "load_shards",
    "prepare_swap_model_weights",
    "reshard_model_weights",
    "shard_shapes",
    "swap_model_weights",
    "torch_dtype",
]
