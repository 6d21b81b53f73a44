"""The "mpi" method, run by test_mpi.py under mpirun with 4 processes:
python -m mpi4py mpi_cases.py CASE (-m mpi4py: an uncaught exception aborts
every rank instead of leaving the others waiting). Every rank prints "rank R ok" when its checks pass."""

import sys

import torch
from mpi4py import MPI

import refit
from conftest import CKPT

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
spec = refit.ModelSpec.from_config(CKPT)
QKV = "decoder.layers.0.self_attention.linear_qkv.weight"


def equal(got, want):
    return got.keys() == want.keys() and all(torch.equal(got[n], want[n]) for n in want)


def collocated():
    """Every rank holds both sides: tp=2,ep=2 -> tp=1,ep=4."""
    src = refit.ShardedModel(spec, "tp=2,ep=2", rank, 4, refit.load_shards(CKPT, "tp=2,ep=2", rank, 4))
    dst_t = refit.empty_shards(spec, "tp=1,ep=4", rank, 4)
    ptrs = {n: t.data_ptr() for n, t in dst_t.items()}
    dst = refit.ShardedModel(spec, "tp=1,ep=4", rank, 4, dst_t)
    assert refit.prepare_swap_model_weights(src, dst, "mpi") is None
    assert not dst_t[QKV].any()  # planned, nothing moved
    refit.clear_plan_cache()
    first = refit.swap_model_weights(src, dst, "mpi")
    second = refit.swap_model_weights(src, dst, "mpi", group=comm)
    assert first.plan_built and not second.plan_built
    assert (first.weight_version, second.weight_version) == (1, 2)
    assert equal(dst_t, refit.load_shards(CKPT, "tp=1,ep=4", rank, 4))
    assert all(t.data_ptr() == ptrs[n] for n, t in dst_t.items())
    refit.clear_plan_cache()
    assert refit.swap_model_weights(src, dst, "mpi").plan_built
    service = refit.get_or_create_service("mpi")
    assert refit.reshard_model_weights(src, dst, service).weight_version == 4
    # atomic: through a shadow copy, published after every rank succeeded.
    for t in dst_t.values():
        t.zero_()
    report = refit.swap_model_weights(src, dst, "mpi", verify="checksum", atomic=True)
    assert report.weight_version == 5
    assert report.shadow_bytes == sum(t.numel() * t.element_size() for t in dst_t.values())
    assert equal(dst_t, refit.load_shards(CKPT, "tp=1,ep=4", rank, 4))
    assert service.group.partial_tensors == []


def non_collocated():
    """Trainer ranks 0-1 (tp=2), engine ranks 2-3 (ep=2), quantised."""
    src = dst = None
    if rank < 2:
        src = refit.ShardedModel(spec, "tp=2", rank, 2, refit.load_shards(CKPT, "tp=2", rank, 2))
    else:
        dst_t = refit.empty_shards(spec, "ep=2", rank - 2, 2)
        dst = refit.ShardedModel(spec, "ep=2", rank - 2, 2, dst_t)
    report = refit.swap_model_weights(src, dst, "mpi", src_rank_offset=0, dst_rank_offset=2)
    assert report.bytes_local == 0
    if rank >= 2:
        assert report.bytes_received > 0
        assert equal(dst_t, refit.load_shards(CKPT, "ep=2", rank - 2, 2))
    q = None
    if rank >= 2:
        q_t = refit.empty_shards(spec, "ep=2", rank - 2, 2, transform="mxfp8")
        q = refit.ShardedModel(spec, "ep=2", rank - 2, 2, q_t)
    refit.swap_model_weights(src, q, "mpi", dst_rank_offset=2, transform="mxfp8")
    if rank >= 2:
        assert q_t[QKV + "_scale"].dtype == torch.uint8
        assert q_t[QKV].view(torch.uint8).any()


def bad_tensor():
    """A wrong tensor on rank 3 fails the refit on every rank, unmoved."""
    src = refit.ShardedModel(spec, "tp=2,ep=2", rank, 4, refit.load_shards(CKPT, "tp=2,ep=2", rank, 4))
    dst_t = refit.empty_shards(spec, "tp=1,ep=4", rank, 4)
    for t in dst_t.values():
        t.fill_(3.0)
    if rank == 3:
        dst_t[QKV] = torch.zeros(192, 64, dtype=torch.complex64)
    dst = refit.ShardedModel(spec, "tp=1,ep=4", rank, 4, dst_t)
    try:
        refit.swap_model_weights(src, dst, "mpi")
        raise AssertionError("no error")
    except ValueError as e:
        if rank == 3:
            assert "rank 3: destination tensor " + QKV + ": dtype torch.complex64" in str(e), e
        else:
            assert "rank 3: destination tensor " + QKV in str(e), e
    assert all(bool((t == 3.0).all()) for n, t in dst_t.items() if t.dtype != torch.complex64)
    dst_t[QKV] = torch.zeros(192, 64)
    if rank == 1:
        dst_t.pop("output_layer.weight")
    dst = refit.ShardedModel(spec, "tp=1,ep=4", rank, 4, dst_t)
    try:
        refit.swap_model_weights(src, dst, "mpi")
        raise AssertionError("no error")
    except (KeyError, ValueError) as e:
        assert "rank 1: destination tensor output_layer.weight: missing" in str(e), e


def stacked():
    """Stacked experts over MPI: trainer ranks 0-1 (tp=2, stacked sources),
    engine ranks 2-3 (ep=2, stacked fp8-block destinations and scales) equal
    the per-expert refit; a tensor bound both ways on rank 3 fails everywhere."""
    fc1 = "decoder.layers.0.mlp.experts.linear_fc1.weight"
    kw = dict(src_rank_offset=0, dst_rank_offset=2, transform="fp8-block")
    src = want = got = None
    if rank < 2:
        src_t = refit.load_shards(CKPT, "tp=2", rank, 2, stacked_experts=True)
        assert src_t[fc1].shape == (4, 32, 64)  # [E, 2 * I / etp, H]
        src = refit.ShardedModel(spec, "tp=2", rank, 2, src_t)
    else:
        want_t = refit.empty_shards(spec, "ep=2", rank - 2, 2, "fp8-block")
        got_t = refit.empty_shards(spec, "ep=2", rank - 2, 2, "fp8-block", stacked_experts=True)
        want = refit.ShardedModel(spec, "ep=2", rank - 2, 2, want_t)
        got = refit.ShardedModel(spec, "ep=2", rank - 2, 2, got_t)
    refit.swap_model_weights(src, want, "mpi", **kw)
    refit.swap_model_weights(src, got, "mpi", **kw)
    if rank >= 2:
        for name, t in got_t.items():
            if name not in want_t:  # a stack: slice e is expert e's tensor
                base, _, suffix = name.partition("_scale")
                suffix = "_scale" + suffix if suffix or name.endswith("_scale") else ""
                parts = [want_t[base + str(e) + suffix] for e in range(t.shape[0])]
                want = torch.stack([p.view(torch.uint8) for p in parts])
                assert torch.equal(t.view(torch.uint8), want), name
            else:
                assert torch.equal(t.view(torch.uint8), want_t[name].view(torch.uint8)), name
        assert got_t[fc1 + "_scale_inv"].shape[0] == 2
        if rank == 3:
            got_t[fc1 + "0"] = got_t[fc1][0]
        got = refit.ShardedModel(spec, "ep=2", rank - 2, 2, got_t)
    try:
        refit.swap_model_weights(src, got, "mpi", **kw)
        raise AssertionError("no error")
    except ValueError as e:
        assert f"rank 3: destination tensor {fc1}: bound both stacked and per expert" in str(e), e


def receiver():
    """The engine side through WeightReceiver: versions publish after a refit;
    checksums, atomic and digests pass through; options the trainer does not
    share fail every rank before any byte moves and publish nothing."""
    options = [{}, {}, dict(verify="checksum", atomic=True), dict(verify=None)]
    if rank < 2:
        src_t = refit.load_shards(CKPT, "ep=2", rank, 2)
        src = refit.ShardedModel(spec, "ep=2", rank, 2, src_t)
        for step, o in enumerate(options):
            try:
                refit.swap_model_weights(src, None, "mpi", dst_rank_offset=2, **o)
            except Exception as e:
                assert step == 3 and "inputs differ" in str(e), e
            for t in src_t.values():
                t.mul_(2.0)
        return
    dst_t = refit.empty_shards(spec, "tp=2", rank - 2, 2)
    engine = refit.WeightReceiver(refit.ShardedModel(spec, "tp=2", rank - 2, 2, dst_t))
    want = refit.load_shards(CKPT, "tp=2", rank - 2, 2)
    for version in (1, 2, 3):
        engine.init_weight_transfer_engine("mpi", src_rank_offset=0, dst_rank_offset=2,
                                           dst_digests=version == 3, **options[version - 1])
        engine.start_weight_update()
        assert engine.is_updating and engine.weight_version == version - 1
        report = engine.update_weights()
        assert engine.weight_version == version - 1  # not yet published
        assert engine.finish_weight_update() == version
        assert equal(dst_t, want) and engine.partial_tensors == []
        for t in want.values():
            t.mul_(2.0)
    assert [name for name, _ in report.dst_digests] == sorted(dst_t)
    assert report.shadow_bytes == sum(t.numel() * t.element_size() for t in dst_t.values())
    # The trainer sends without checksums and without atomic: refused.
    engine.start_weight_update()
    try:
        engine.update_weights()
        raise AssertionError("options that differ from the trainer's were accepted")
    except refit.RefitError as e:
        assert "inputs differ" in str(e) and "verify" in str(e), e
    assert engine.partial_tensors == []  # refused before any byte moved
    assert engine.finish_weight_update() == 3


def silent_peer():
    """Rank 3 never joins: the others fail with RefitTimeoutError naming it."""
    group = refit.MpiGroup(comm.py2f(), timeout_s=2.0)
    refit.get_or_create_service("mpi", group)  # every rank opens its endpoint
    if rank == 3:
        return
    src = refit.ShardedModel(spec, "tp=2,ep=2", rank, 4, refit.load_shards(CKPT, "tp=2,ep=2", rank, 4))
    try:
        refit.swap_model_weights(src, None, "mpi", group=group)
        raise AssertionError("no error")
    except refit.RefitTimeoutError as e:
        assert isinstance(e, TimeoutError) and "for rank 3" in str(e), e
    assert group.weight_version == 0
    assert group.partial_tensors == []  # failed before any byte moved


def nccl():
    """The "nccl" method, collocated tp=2,ep=2 -> tp=1,ep=4: over NCCL on one
    GPU per rank where there are 4, else every rank raises a RefitError that
    names the NCCL service (no rank left waiting)."""
    src_t = refit.load_shards(CKPT, "tp=2,ep=2", rank, 4)
    dst_t = refit.empty_shards(spec, "tp=1,ep=4", rank, 4)
    if torch.cuda.is_available() and torch.cuda.device_count() >= 4:
        torch.cuda.set_device(rank)
        src_t = {n: t.cuda() for n, t in src_t.items()}
        dst_t = {n: t.cuda() for n, t in dst_t.items()}
    src = refit.ShardedModel(spec, "tp=2,ep=2", rank, 4, src_t)
    dst = refit.ShardedModel(spec, "tp=1,ep=4", rank, 4, dst_t)
    if not (torch.cuda.is_available() and torch.cuda.device_count() >= 4):
        try:
            refit.swap_model_weights(src, dst, "nccl")
        except refit.RefitError as e:
            assert "nccl copy service: rank" in str(e) and "no CUDA device" in str(e), str(e)
            return
        raise AssertionError("the nccl refit ran without GPUs")
    report = refit.swap_model_weights(src, dst, "nccl")
    assert report.weight_version == 1
    want = refit.load_shards(CKPT, "tp=1,ep=4", rank, 4)
    assert equal({n: t.cpu() for n, t in dst_t.items()}, want)


def cuda_ipc():
    """The "cuda_ipc" method, collocated tp=2,ep=2 -> tp=1,ep=4: with a GPU,
    4 processes sharing the node's GPUs write into each other's CUDA tensors
    (twice: the second refit reuses the exported handles); without, host
    tensors are refused on every rank (naming rank 0's first), before any byte
    moves."""
    src_t = refit.load_shards(CKPT, "tp=2,ep=2", rank, 4)
    dst_t = refit.empty_shards(spec, "tp=1,ep=4", rank, 4)
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(rank % torch.cuda.device_count())
        src_t = {n: t.cuda() for n, t in src_t.items()}
        dst_t = {n: t.cuda() for n, t in dst_t.items()}
    src = refit.ShardedModel(spec, "tp=2,ep=2", rank, 4, src_t)
    dst = refit.ShardedModel(spec, "tp=1,ep=4", rank, 4, dst_t)
    if not gpu:
        try:
            refit.swap_model_weights(src, dst, "cuda_ipc")
        except ValueError as e:
            assert "rank 0: source tensor" in str(e) and "host memory" in str(e), str(e)
            return
        raise AssertionError("the cuda_ipc refit took host tensors")
    want = refit.load_shards(CKPT, "tp=1,ep=4", rank, 4)
    for version in (1, 2):
        assert refit.swap_model_weights(src, dst, "cuda_ipc").weight_version == version
        assert equal({n: t.cpu() for n, t in dst_t.items()}, want)
        for t in dst_t.values():
            t.zero_()


def several_destinations():
    """One pass into a prefill pool on rank 1 (tp=1) and a decode pool on
    ranks 2-3 (ep=2) from the trainer on rank 0; then EPLB moves experts 1
    and 2 between the decode ranks and the next refit plans only them again
    (each rank rebuilding its own plan)."""
    src = None
    if rank == 0:
        src = refit.ShardedModel(spec, "tp=1", 0, 1, refit.load_shards(CKPT, "tp=1", 0, 1))

    def target(decode):
        if rank == 1:
            t = refit.empty_shards(spec, "tp=1", 0, 1)
            return t, "tp=1", 0, 1, (refit.ShardedModel(spec, "tp=1", 0, 1, t), 1)
        if rank >= 2:
            t = refit.empty_shards(spec, decode, rank - 2, 2)
            return t, decode, rank - 2, 2, (refit.ShardedModel(spec, decode, rank - 2, 2, t), 2)
        return None, None, 0, 0, None

    reports = []
    for decode in ("ep=2,placement=0:1:2:3", "ep=2,placement=0:2:1:3"):
        t, layout, r, world, model = target(decode)
        reports.append(refit.swap_model_weights(src, model, "mpi"))
        assert reports[-1].weight_version == len(reports) and reports[-1].plan_built
        if t is not None:
            assert equal(t, refit.load_shards(CKPT, layout, r, world)), (rank, decode)
    # Experts 1 and 2 moved: their fc1 and fc2 in the 2 MoE layers.
    assert reports[1].params_replanned == 2 * 2 * 2, reports[1].params_replanned
    assert reports[0].params_replanned > 4 * reports[1].params_replanned


CASES = {f.__name__: f for f in (collocated, non_collocated, bad_tensor, stacked, receiver,
                                 several_destinations,
                                 silent_peer, nccl, cuda_ipc)}

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    comm.Barrier()
    print(f"rank {rank} ok", flush=True)
