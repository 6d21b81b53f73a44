#!/usr/bin/env python3
"""A trainer job and an inference job, as two programs sharing one MPI world
(MPMD): the trainer pushes its weights with swap_model_weights, the inference
worker receives them through refit.WeightReceiver (the shape of vLLM's
weight-transfer engine) without knowing anything of the trainer's code.

  trainer:    world ranks 0-1, layout ep=2
  inference:  world ranks 2-3, layout tp=2

Run:  PYTHONPATH=build/python mpirun -np 2 python3 examples/python/refit_mpmd.py trainer \\
                                   : -np 2 python3 examples/python/refit_mpmd.py inference
"""

import argparse
import sys
from pathlib import Path

import torch
from mpi4py import MPI

import refit

DEFAULT_CKPT = Path(__file__).resolve().parents[2] / "data/checkpoints/agilerl-tiny-qwen3-moe"
TRAINER, TRAINER_WORLD = "ep=2", 2
ENGINE, ENGINE_WORLD = "tp=2", 2
ENGINE_OFFSET = TRAINER_WORLD  # inference ranks follow the trainer's in COMM_WORLD
REFITS = 2


def fake_optimizer_step(tensors):
    """A deterministic, elementwise in-place update standing in for
    optimizer.step() (the inference side replays it only to check)."""
    with torch.no_grad():
        for t in tensors.values():
            if t.is_floating_point():
                t.add_(0.01 * torch.sign(t))


def say(line):
    """One write per line, so that mpirun does not interleave ranks mid-line."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def trainer(comm, ckpt):
    rank = comm.Get_rank()
    spec = refit.ModelSpec.from_config(ckpt)
    weights = refit.load_shards(ckpt, TRAINER, rank, TRAINER_WORLD)
    model = refit.ShardedModel(spec, TRAINER, rank, TRAINER_WORLD, weights)
    for step in range(1, REFITS + 1):
        if step > 1:
            fake_optimizer_step(weights)  # loss.backward(); optimizer.step()
        # Push the new weights; the inference workers receive them collectively.
        report = refit.swap_model_weights(model, None, "mpi", group=comm,
                                          src_rank_offset=0, dst_rank_offset=ENGINE_OFFSET)
        say(f"[refit {step}] trainer rank {rank}: plan_built={report.plan_built} "
            f"sent={report.bytes_sent} local={report.bytes_local} "
            f"msgs={report.messages_sent} total={report.total_ms:.2f}ms "
            f"version={report.weight_version} (source)")
    return 0


def inference(comm, ckpt):
    rank = comm.Get_rank() - ENGINE_OFFSET  # rank within the engine's layout
    spec = refit.ModelSpec.from_config(ckpt)
    weights = refit.empty_shards(spec, ENGINE, rank, ENGINE_WORLD)  # the engine's tensors
    receiver = refit.WeightReceiver(refit.ShardedModel(spec, ENGINE, rank, ENGINE_WORLD, weights))
    receiver.init_weight_transfer_engine("mpi", group=comm, src_rank_offset=0,
                                         dst_rank_offset=ENGINE_OFFSET)

    # Only to check: what the engine must hold after each refit.
    expected = refit.load_shards(ckpt, ENGINE, rank, ENGINE_WORLD)
    failures = 0
    for step in range(1, REFITS + 1):
        if step > 1:
            fake_optimizer_step(expected)
        receiver.start_weight_update()      # stop serving from the weights
        report = receiver.update_weights()  # receive, in place
        version = receiver.finish_weight_update()  # publish; serve again
        bad = sum(not torch.equal(weights[n], expected[n]) for n in expected)
        bad += version != step or receiver.weight_version != step
        bad += report.bytes_received == 0  # the layouts differ: bytes cross ranks
        failures += bad
        say(f"[refit {step}] inference rank {rank}: plan_built={report.plan_built} "
            f"received={report.bytes_received} local={report.bytes_local} "
            f"msgs={report.messages_received} total={report.total_ms:.2f}ms "
            f"version={receiver.weight_version} {'bit-exact' if bad == 0 else 'WRONG'}")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("role", choices=("trainer", "inference"))
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT)
    args = ap.parse_args()

    comm = MPI.COMM_WORLD
    if comm.Get_size() != TRAINER_WORLD + ENGINE_WORLD:
        print(f"expected {TRAINER_WORLD} trainer + {ENGINE_WORLD} inference ranks",
              file=sys.stderr)
        return 2
    # The trainer's app context must come first on the mpirun line (ranks 0-1).
    role = "trainer" if comm.Get_rank() < ENGINE_OFFSET else "inference"
    if comm.allreduce(role != args.role, op=MPI.SUM):  # collective: all ranks agree
        print(f"rank {comm.Get_rank()}: launched as {args.role}, expected {role}",
              file=sys.stderr)
        return 2
    if role == "trainer":
        failures = trainer(comm, args.checkpoint)
    else:
        failures = inference(comm, args.checkpoint)

    # Every rank exits with the same code.
    failures = comm.allreduce(failures, op=MPI.SUM)
    if comm.Get_rank() == 0:
        print("PASS" if failures == 0 else f"FAIL ({failures} failures)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
