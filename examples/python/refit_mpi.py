#!/usr/bin/env python3
"""Non-collocated refit over MPI, one process per rank: ranks 0-1 are the
trainer (layout tp=2), ranks 2-3 the inference engine (layout tp=1,ep=2).
Every process of the communicator calls swap_model_weights; a rank passes the
model it holds and None for the side it is not on.

Run:  PYTHONPATH=build/python mpirun -np 4 python3 examples/python/refit_mpi.py
"""

import argparse
import sys
from pathlib import Path

import torch
from mpi4py import MPI

import refit

DEFAULT_CKPT = Path(__file__).resolve().parents[2] / "data/checkpoints/agilerl-tiny-qwen3-moe"
TRAINER, TRAINER_WORLD = "tp=2", 2        # group ranks 0, 1
ENGINE, ENGINE_WORLD = "tp=1,ep=2", 2     # group ranks 2, 3
ENGINE_OFFSET = TRAINER_WORLD


def fake_optimizer_step(tensors):
    """A deterministic, elementwise in-place update standing in for
    optimizer.step(): the engine can replay it on its own copy to check."""
    with torch.no_grad():
        for t in tensors.values():
            if t.is_floating_point():
                t.add_(0.01 * torch.sign(t))


def count_mismatches(got, want):
    bad = [n for n in want if n not in got or not torch.equal(got[n], want[n])]
    return len(bad) + len([n for n in got if n not in want])


def print_in_rank_order(comm, line):
    """Rank 0 prints every rank's line, in rank order (collective)."""
    lines = comm.gather(line, root=0)
    if comm.Get_rank() == 0:
        print("\n".join(lines), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT)
    args = ap.parse_args()

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    if comm.Get_size() != TRAINER_WORLD + ENGINE_WORLD:
        if rank == 0:
            print(f"run with mpirun -np {TRAINER_WORLD + ENGINE_WORLD}", file=sys.stderr)
        return 2
    spec = refit.ModelSpec.from_config(args.checkpoint)
    is_trainer = rank < ENGINE_OFFSET

    # Each process builds only its own side's model (layout rank = group rank - offset).
    src = dst = None
    if is_trainer:
        weights = refit.load_shards(args.checkpoint, TRAINER, rank, TRAINER_WORLD)
        src = refit.ShardedModel(spec, TRAINER, rank, TRAINER_WORLD, weights)
    else:
        engine_rank = rank - ENGINE_OFFSET
        weights = refit.empty_shards(spec, ENGINE, engine_rank, ENGINE_WORLD)
        dst = refit.ShardedModel(spec, ENGINE, engine_rank, ENGINE_WORLD, weights)
        # What this engine rank must hold: the checkpoint as a tp=1,ep=2 rank loads it.
        expected = refit.load_shards(args.checkpoint, ENGINE, engine_rank, ENGINE_WORLD)

    failures = 0
    for step in (1, 2):
        if step == 2:  # a training step; the engine replays it on its expected copy
            fake_optimizer_step(weights if is_trainer else expected)
        report = refit.swap_model_weights(src, dst, "mpi", group=comm,
                                          src_rank_offset=0, dst_rank_offset=ENGINE_OFFSET)
        if is_trainer:
            verdict = "(source)"
        else:
            bad = count_mismatches(weights, expected)
            bad += report.bytes_received == 0  # the layouts differ: bytes must cross ranks
            failures += bad
            verdict = "bit-exact" if bad == 0 else "WRONG"
        failures += report.plan_built != (step == 1)  # plan built once, then cached
        print_in_rank_order(comm, (
            f"[refit {step}] rank {rank} ({'trainer' if is_trainer else 'engine '}): "
            f"plan_built={report.plan_built} sent={report.bytes_sent} "
            f"received={report.bytes_received} local={report.bytes_local} "
            f"msgs={report.messages_sent}/{report.messages_received} "
            f"wire={report.wire_ms:.2f}ms total={report.total_ms:.2f}ms "
            f"version={report.weight_version} {verdict}"))

    # Every rank exits with the same code.
    failures = comm.allreduce(failures, op=MPI.SUM)
    if rank == 0:
        print("PASS" if failures == 0 else f"FAIL ({failures} failures)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
