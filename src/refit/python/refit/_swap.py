"""The reference's refit calls (megatron/core/resharding/refit.py): plans and
copy services cached per refit group, tensors read and written in place."""

import atexit
import sys

from . import _refit
from ._refit import CudaIpcGroup, LocalGroup, MpiGroup, NcclGroup, SocketGroup

_METHODS = ("local", "mpi", "socket", "nccl", "cuda_ipc")
_local_groups = {}  # (world size, "cpu" or "cuda") -> LocalGroup
_mpi_groups = {}  # id(mpi4py communicator) -> (communicator, handle, MpiGroup)
_controlled_groups = {}  # (method, id(comm), device) -> (comm, handle, group)


class CopyService:
    """The copy service of one refit group (get_or_create_service): the
    transport's endpoints of every rank of the group, cached by refit and
    kept until clear_service_cache(). ``method`` is the refit method,
    ``group`` the LocalGroup, MpiGroup, NcclGroup or CudaIpcGroup."""

    def __init__(self, method, group):
        self.method = method
        self.group = group

    def __repr__(self):
        return f"CopyService({self.method!r}, size={self.group.size})"


def _check_method(refit_method):
    if refit_method not in _METHODS:
        raise ValueError(
            f"refit_method {refit_method!r}: expected one of {_METHODS}")


def _flat_models(entries):
    """The ShardedModels of per-rank entries: a model, None, a (model,
    rank_offset) tuple or a list of models and tuples."""
    for e in entries:
        if isinstance(e, list):
            yield from _flat_models(e)
        elif isinstance(e, tuple):
            yield e[0]
        elif e is not None:
            yield e


def _local_group(group, src_model, target_model):
    if isinstance(group, LocalGroup):
        return group
    if group is None:
        lists = [m for m in (src_model, target_model) if isinstance(m, (list, tuple))]
        if not lists:
            raise ValueError(
                '"local" refit: src_model and target_model are lists with one '
                "entry per rank (ShardedModel or None)")
        size = len(lists[0])
    elif isinstance(group, int):
        size = group
    else:
        raise ValueError(
            f'"local" refit: group is a {type(group).__name__}, expected None, '
            "a world size or a refit.LocalGroup")
    models = [m for ms in (src_model, target_model) if isinstance(ms, (list, tuple))
              for m in _flat_models(ms)]
    device = "cuda" if any(getattr(m, "device", "cpu") == "cuda" for m in models) else "cpu"
    if (size, device) not in _local_groups:
        _local_groups[(size, device)] = LocalGroup(size, device=device)
    return _local_groups[(size, device)]


def _mpi4py_comm(method, group):
    """The mpi4py communicator of a "mpi" or "nccl" group argument."""
    if group is None:
        from mpi4py import MPI

        group = MPI.COMM_WORLD
    if not hasattr(group, "py2f"):
        raise ValueError(
            f'"{method}" refit: group is a {type(group).__name__}, expected None, '
            f"an mpi4py communicator or a refit.{_GROUP_CLASS[method].__name__}")
    return group


_GROUP_CLASS = {"mpi": MpiGroup, "nccl": NcclGroup, "cuda_ipc": CudaIpcGroup}


def _socket_group(group):
    if type(group) is not SocketGroup:
        raise ValueError(
            f'"socket" refit: group is a {type(group).__name__}, expected a '
            "refit.SocketGroup(rendezvous, rank, size)")
    return group


def _mpi_group(group):
    if isinstance(group, SocketGroup):
        raise ValueError('"mpi" refit: group is a refit.SocketGroup; use refit_method '
                         '"socket"')
    for method in ("nccl", "cuda_ipc"):
        if isinstance(group, _GROUP_CLASS[method]):
            raise ValueError(f'"mpi" refit: group is a refit.{_GROUP_CLASS[method].__name__}; '
                             f'use refit_method "{method}"')
    if isinstance(group, MpiGroup):
        return group
    if not _refit.have_mpi():
        raise NotImplementedError('refit_method "mpi": refit was built without MPI')
    group = _mpi4py_comm("mpi", group)
    # By the communicator object (held, so its id is not reused) and its
    # handle: a freed communicator's handle changes, and MPI may give its old
    # number to a new communicator of other processes.
    handle = group.py2f()
    cached = _mpi_groups.get(id(group))
    if cached is None or cached[1] != handle:
        cached = _mpi_groups[id(group)] = (group, handle, MpiGroup(handle))
    return cached[2]


def _current_cuda_device():
    try:
        import torch
    except ImportError:
        return -1
    return torch.cuda.current_device() if torch.cuda.is_available() else -1


def _controlled_group(method, group):
    """The "nccl" or "cuda_ipc" group of an mpi4py communicator (cached)."""
    cls = _GROUP_CLASS[method]
    if isinstance(group, cls):
        return group
    if isinstance(group, SocketGroup):
        raise ValueError(
            f'"{method}" refit: group is a refit.SocketGroup; for processes '
            f"launched without MPI use refit.{cls.__name__}.from_rendezvous("
            "rendezvous, rank, size)")
    have = _refit.have_nccl() if method == "nccl" else _refit.have_cuda_ipc()
    if not (have and _refit.have_mpi()):
        raise NotImplementedError(
            f'refit_method "{method}": refit was built without '
            + ("MPI (its control messages)" if have else
               "NCCL" if method == "nccl" else "CUDA"))
    group = _mpi4py_comm(method, group)
    handle = group.py2f()
    device = _current_cuda_device() if method == "nccl" else -1
    key = (method, id(group), device)
    cached = _controlled_groups.get(key)
    if cached is None or cached[1] != handle:
        g = cls(handle, device=device) if method == "nccl" else cls(handle)
        cached = _controlled_groups[key] = (group, handle, g)
    return cached[2]


def _group_of(refit_method, group, src_model=None, target_model=None):
    _check_method(refit_method)
    if refit_method == "local":
        return _local_group(group, src_model, target_model)
    if refit_method in ("nccl", "cuda_ipc"):
        return _controlled_group(refit_method, group)
    if refit_method == "socket":
        return _socket_group(group)
    return _mpi_group(group)


def _per_rank(models, size):
    if models is None:
        return [None] * size
    if not isinstance(models, (list, tuple)):
        raise ValueError(
            '"local" refit: src_model and target_model are lists with one entry '
            f"per rank, got a {type(models).__name__}")
    return list(models)


def _stream_of(stream):
    """The caller's CUDA stream as an integer: ``stream`` (an int or a
    torch.cuda.Stream); by default torch's current stream once torch has
    initialised CUDA, else 0 (the legacy default stream)."""
    if stream is None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            return torch.cuda.current_stream().cuda_stream
        return 0
    return int(getattr(stream, "cuda_stream", stream))


def _fanout_of(fanout_gpus_per_node):
    if isinstance(fanout_gpus_per_node, bool) or not isinstance(
            fanout_gpus_per_node, int) or fanout_gpus_per_node < 0:
        raise ValueError("fanout_gpus_per_node must be an int >= 0 (0: off), "
                         f"got {fanout_gpus_per_node!r}")
    return fanout_gpus_per_node


def _integrity_of(verify, dst_digests, atomic):
    """The integrity options as _refit takes them: ("auto", "none" or
    "checksum", dst_digests, atomic); ValueError naming the argument
    otherwise."""
    if verify not in (None, "none", "checksum", "auto"):
        raise ValueError(
            f'verify must be "auto", "checksum", "none" or None, got {verify!r}')
    for name, value in (("dst_digests", dst_digests), ("atomic", atomic)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool, got {value!r}")
    return (verify or "none"), dst_digests, atomic


def _call(kind, src_model, target_model, refit_method, group, src_rank_offset,
          dst_rank_offset, transform, stream=None, fanout_gpus_per_node=0,
          verify="auto", dst_digests=False, atomic=False):
    i = _integrity_of(verify, dst_digests, atomic)
    g = _group_of(refit_method, group, src_model, target_model)
    s = _stream_of(stream)
    f = _fanout_of(fanout_gpus_per_node)
    if isinstance(g, LocalGroup):
        return _refit._swap_local(g, _per_rank(src_model, g.size),
                                  _per_rank(target_model, g.size),
                                  src_rank_offset, dst_rank_offset, transform, kind, s,
                                  f, *i)
    return _refit._swap_mpi(g, src_model, target_model, src_rank_offset,
                            dst_rank_offset, transform, kind, s, f, *i)


def prepare_swap_model_weights(src_model, target_model, refit_method, group=None,
                               src_rank_offset=0, dst_rank_offset=0, transform=None,
                               fanout_gpus_per_node=0, verify="auto", dst_digests=False,
                               atomic=False):
    """Builds and caches the reshard plan of this refit without moving bytes
    (collective on a cache miss). Arguments as swap_model_weights: pass the
    ``verify`` and ``atomic`` of the refits to come (they are part of the
    inputs the ranks agree on, so other values prepare another session).
    Returns None."""
    return _call("prepare", src_model, target_model, refit_method, group,
                 src_rank_offset, dst_rank_offset, transform,
                 fanout_gpus_per_node=fanout_gpus_per_node, verify=verify,
                 dst_digests=dst_digests, atomic=atomic)


def swap_model_weights(src_model, target_model, refit_method, group=None,
                       src_rank_offset=0, dst_rank_offset=0, transform=None,
                       stream=None, fanout_gpus_per_node=0, verify="auto",
                       dst_digests=False, atomic=False):
    """Refits ``src_model`` into ``target_model`` in place.

    ``refit_method`` "local": every rank is a thread of this process;
    ``src_model`` and ``target_model`` are lists with one entry per group rank
    (a ShardedModel, or None where the rank holds no such model), ``group`` a
    LocalGroup, a world size or None (a cached group of len(list) ranks, on
    "cuda" when a model holds CUDA tensors).
    Returns one SwapReport per rank.

    ``refit_method`` "mpi": one process per rank; ``src_model`` /
    ``target_model`` are this rank's ShardedModel or None (non-collocated);
    ``group`` an mpi4py communicator (default MPI.COMM_WORLD) or an MpiGroup.
    Every process of the group calls it. Returns this rank's SwapReport.

    ``refit_method`` "socket": as "mpi", for processes of one node launched
    without MPI (torchrun, Ray): ``group`` a refit.SocketGroup(rendezvous,
    rank, size) every process made with the same folder; bytes over
    Unix-domain sockets, host tensors only.

    ``refit_method`` "nccl": as "mpi" (one process per GPU, MPI for control),
    but bytes move over NCCL on the current CUDA device: CUDA tensors in
    place where contiguous, host tensors staged through the device; ``group``
    an mpi4py communicator or a NcclGroup (NcclGroup.from_rendezvous(...)
    for processes launched without MPI).

    ``refit_method`` "cuda_ipc": as "mpi" for processes of one node, with
    CUDA tensors only: each sender writes into its receivers' tensors
    through CUDA IPC; ``group`` an mpi4py communicator or a CudaIpcGroup
    (CudaIpcGroup.from_rendezvous(rendezvous, rank, size) for processes
    launched without MPI: the metadata then goes over sockets).

    Source ranks are group ranks [src_rank_offset, +source world size),
    destination ranks [dst_rank_offset, +destination world size).

    Several destinations in one pass: a rank's target entry may be a list
    of destination models, each a ShardedModel (at ``dst_rank_offset``) or a
    ``(ShardedModel, rank_offset)`` tuple: a main model and its MTP draft
    (layouts "...,part=main" and "...,part=mtp", the draft at its own TP) on
    the same ranks, or prefill and decode pools on their own ranks, each
    with its own layout. Every rank of a destination's ranks binds it. One
    plan per destination, one pass, one agreement, one weight version;
    where a rank holds a tensor with the same bytes in two destinations the
    sources send it once and the rank copies it (SwapReport
    ``bytes_copied``). ``atomic`` and ``dst_digests`` take one destination
    per rank.
    ``transform``: None; the destination format as ``refit run --dst-dtype``
    names it ("bf16", "f16", "f32", "fp8-block", "mxfp8"); or a dict of the
    choices ``refit run``'s flags make: dst_dtype, cast (list of
    "PATTERN=bf16|f16|f32"), cast_on / quantize_on ("send" / "recv"),
    fp8_block (block extent, default 128), fp8_scale ("f32" or "ue8m0"),
    mxfp8_swizzled (bool). A quantised target model binds each weight NAME
    (F8_E4M3; torch.uint8 where torch has no float8) with its scales
    NAME_scale_inv (F32) or NAME_scale (U8 holding E8M0);
    shard_shapes(..., transform) lists them.

    ``stream``: the caller's CUDA stream (a torch.cuda.Stream or its
    cuda_stream integer); default torch.cuda.current_stream() once torch has
    initialised CUDA, else the legacy default stream. With CUDA tensors, no
    byte moves before the work queued on it (the optimizer step) has
    finished, and every byte has landed when the call returns.

    ``fanout_gpus_per_node``: 0 (off), or the GPUs of a node, group ranks
    placed in rank order (rank r on node r // fanout_gpus_per_node). Where
    several destination ranks of a node hold the same shard (data-parallel
    replicas, tensors replicated over TP, experts replicated over EDP), one
    of them receives the bytes no rank of its node holds and forwards them
    to the others after its own receives, so the network carries them once
    per node. Every rank passes the same value.

    ``verify``: "checksum": every message carries an xxh3-64 of its bytes
    (16 bytes more per message), checked by its receiver before the call
    returns; a mismatch raises RefitError on every rank naming the task and
    ranks, and the weight version stays. Host tensors only. "none" (or None):
    trust the transport. "auto" (the default): "checksum" when no rank of
    the group binds CUDA tensors, else "none"; SwapReport.verified says
    which. Every rank passes the same value.

    ``dst_digests``: True fills each SwapReport's ``dst_digests`` with
    (name, xxh3) of every destination tensor of the rank, in name order:
    XXH3_64bits (seed 0) of the tensor's bytes after the refit (one more
    read of them), to compare with a hash of the same weights computed
    elsewhere. Host tensors only (ValueError otherwise, before any byte
    moves).

    ``atomic``: True writes the refit into a host shadow copy of each rank's
    destination tensors (filled from them first) and copies it into them
    only once every rank's refit succeeded; on any failure the destination
    tensors keep every byte. Costs each rank host memory as large as its
    destination tensors (SwapReport ``shadow_bytes``, bytes), kept with the
    group between atomic calls and reused while the tensors stay at the
    same addresses (clear_plan_cache() frees it), and two host copies of
    the destination bytes a call (``shadow_ms``, ``publish_ms``, ms). Host
    tensors only:
    a CUDA destination tensor raises ValueError on every rank before any
    byte moves. Every rank passes the same value.

    Versions: the group's ``weight_version`` advances only after every rank
    confirmed its refit (one agreement round after the moves); on any
    failure it stays. A failure after bytes started to move leaves the
    destination tensors with new, old or partial bytes unless ``atomic``:
    the error's message then ends with "; rank R: N destination tensors may
    hold partial bytes (A, B, C and K more; Communicator::partial_tensors)"
    and the group's ``partial_tensors`` names them.

    Every destination byte a source holds is written; vocabulary padding
    rows (dim 0 padded to a multiple of 128 x TP, as Megatron pads) hold no
    weights and are left as they are (empty_shards zero-fills them).

    The GIL is released while bytes move. The first call with given layouts,
    offsets, model and transform builds the plan; later calls reuse it.
    Raises ValueError / KeyError naming the rank and tensor for a bad,
    missing or unknown tensor (before any destination byte changes, on every
    rank), ValueError naming the argument for a bad ``verify``,
    ``dst_digests`` or ``atomic``, RefitTimeoutError when a peer makes no
    progress for the group's timeout, NotImplementedError for a method this
    build lacks."""
    return _call("swap", src_model, target_model, refit_method, group,
                 src_rank_offset, dst_rank_offset, transform, stream,
                 fanout_gpus_per_node, verify, dst_digests, atomic)


def reshard_model_weights(src_model, target_model, service, src_rank_offset=0,
                          dst_rank_offset=0, transform=None, stream=None,
                          fanout_gpus_per_node=0, verify="auto", dst_digests=False,
                          atomic=False):
    """swap_model_weights over ``service`` (from get_or_create_service): the
    method and group are the service's; the other arguments (``verify``,
    ``dst_digests``, ``atomic`` included) as swap_model_weights."""
    if not isinstance(service, CopyService):
        raise ValueError(
            f"service is a {type(service).__name__}, expected a refit.CopyService "
            "from get_or_create_service")
    return _call("reshard", src_model, target_model, service.method,
                 service.group, src_rank_offset, dst_rank_offset, transform, stream,
                 fanout_gpus_per_node, verify, dst_digests, atomic)


def get_or_create_service(refit_method, group=None):
    """The cached copy service of ``group`` for ``refit_method``, created on
    first use (collective: every rank of the group calls it). For "local",
    ``group`` is a LocalGroup or a world size."""
    if refit_method == "local" and group is None:
        raise ValueError('"local": give the group (a LocalGroup or a world size)')
    g = _group_of(refit_method, group)
    if isinstance(g, LocalGroup):
        _refit._service_local(g)
    else:
        _refit._service_mpi(g)
    return CopyService(refit_method, g)


def clear_service_cache():
    """Closes every cached copy service; the next refit opens new ones. The
    groups (and their weight versions) stay."""
    _refit._clear_service_cache()


def clear_plan_cache():
    """Forgets every cached reshard plan (the next refit plans again) and
    frees the shadow copies kept for atomic=True."""
    _refit._clear_plan_cache()


def clear_all_caches():
    """clear_service_cache() and clear_plan_cache()."""
    clear_service_cache()
    clear_plan_cache()


@atexit.register
def _release_groups():
    # Before mpi4py finalizes MPI (its exit hook runs after atexit's): the MPI
    # groups free their communicators while MPI is still up.
    clear_all_caches()
    _mpi_groups.clear()
    _controlled_groups.clear()
    _local_groups.clear()
