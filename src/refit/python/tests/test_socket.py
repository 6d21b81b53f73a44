"""Processes launched without MPI (here by multiprocessing), joined through a
rendezvous folder: the "socket" method over host tensors, and "cuda_ipc" over
torch CUDA tensors with its metadata on sockets where a GPU is present."""

import multiprocessing as mp
import tempfile

import pytest
import torch

import refit
from conftest import CKPT, DST, SRC, WORLD


def _rank(method, rendezvous, rank, device, out):
    """One process's refits of the bundled checkpoint, twice; puts (rank,
    "ok") or (rank, the error) on `out`."""
    try:
        spec = refit.ModelSpec.from_config(CKPT)
        src_t = {n: t.to(device) for n, t in refit.load_shards(CKPT, SRC, rank, WORLD).items()}
        dst_t = {n: t.to(device) for n, t in
                 refit.empty_shards(spec, DST, rank, WORLD).items()}
        if device == "cuda":
            torch.cuda.synchronize()
        if method == "socket":
            group = refit.SocketGroup(rendezvous, rank, WORLD, timeout_s=60)
        else:
            group = refit.CudaIpcGroup.from_rendezvous(rendezvous, rank, WORLD, timeout_s=60)
        src = refit.ShardedModel(spec, SRC, rank, WORLD, src_t)
        dst = refit.ShardedModel(spec, DST, rank, WORLD, dst_t)
        for step in range(2):
            report = refit.swap_model_weights(src, dst, method, group=group)
            assert report.weight_version == step + 1, report
            assert group.weight_version == step + 1
        for name, want in refit.load_shards(CKPT, DST, rank, WORLD).items():
            assert torch.equal(dst_t[name].cpu(), want), name
        out.put((rank, "ok"))
    except BaseException as e:  # reported to the parent, which fails the test
        out.put((rank, repr(e)))


def run_processes(method, device):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="refit-py-") as rendezvous:
        procs = [ctx.Process(target=_rank, args=(method, rendezvous, r, device, out))
                 for r in range(WORLD)]
        for p in procs:
            p.start()
        results = dict(out.get(timeout=300) for _ in procs)
        for p in procs:
            p.join(timeout=60)
    assert results == {r: "ok" for r in range(WORLD)}, results


def test_socket_method_refits_processes_launched_without_mpi():
    run_processes("socket", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="skipped: no CUDA device")
def test_cuda_ipc_over_sockets_refits_cuda_tensors_of_processes():
    run_processes("cuda_ipc", "cuda")


def test_socket_groups_are_named_where_they_do_not_fit(spec):
    src = refit.ShardedModel(spec, SRC, 0, WORLD, refit.load_shards(CKPT, SRC, 0, WORLD))
    with pytest.raises(ValueError, match='"socket" refit: group is a NoneType'):
        refit.swap_model_weights(src, None, "socket")
    with tempfile.TemporaryDirectory(prefix="refit-py-") as rendezvous:
        group = refit.SocketGroup(rendezvous, 0, 1, timeout_s=5)
        assert (group.rank, group.size, group.weight_version) == (0, 1, 0)
        with pytest.raises(ValueError, match='use refit_method "socket"'):
            refit.swap_model_weights(src, None, "mpi", group=group)
        with pytest.raises(ValueError, match="CudaIpcGroup.from_rendezvous"):
            refit.swap_model_weights(src, None, "cuda_ipc", group=group)


def test_a_rank_that_never_joins_is_a_timeout_naming_it():
    with tempfile.TemporaryDirectory(prefix="refit-py-") as rendezvous:
        with pytest.raises(refit.RefitTimeoutError, match="from ranks 1"):
            refit.SocketGroup(rendezvous, 0, 2, timeout_s=0.3)
