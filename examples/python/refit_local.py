#!/usr/bin/env python3
"""Collocated refit in one process: a "trainer" with layout tp=2,ep=2 and an
"inference engine" with layout tp=1,ep=4 share 4 ranks, each rank a thread of
this process (refit method "local").

What a training loop would do:
  1. load / train the trainer's shards (here: load_shards from a checkpoint),
  2. allocate the engine's tensors once (empty_shards),
  3. after every optimizer step, swap_model_weights(trainer, engine, "local"):
     the first call builds the reshard plan, later calls only move bytes,
     writing the engine's tensors in place.

Run:  PYTHONPATH=build/python python3 examples/python/refit_local.py
"""

import argparse
import sys
from pathlib import Path

import torch

import refit

DEFAULT_CKPT = Path(__file__).resolve().parents[2] / "data/checkpoints/agilerl-tiny-qwen3-moe"
WORLD = 4
TRAINER, ENGINE = "tp=2,ep=2", "tp=1,ep=4"


def fake_optimizer_step(tensors):
    """A deterministic in-place update standing in for optimizer.step()."""
    with torch.no_grad():
        for t in tensors.values():
            if t.is_floating_point():
                t.add_(0.01 * torch.sign(t))


def check(label, got, want):
    """Number of tensors of `got` that are not bit-identical to `want`."""
    bad = [n for n in want if n not in got or not torch.equal(got[n], want[n])]
    bad += [n for n in got if n not in want]
    for n in bad[:5]:
        print(f"  {label}: {n} differs")
    return len(bad)


def print_reports(what, reports, failures_per_rank):
    for r, (rep, bad) in enumerate(zip(reports, failures_per_rank)):
        print(f"[{what}] rank {r}: plan_built={rep.plan_built} "
              f"sent={rep.bytes_sent} received={rep.bytes_received} local={rep.bytes_local} "
              f"msgs={rep.messages_sent}/{rep.messages_received} "
              f"plan={rep.plan_ms:.2f}ms total={rep.total_ms:.2f}ms "
              f"version={rep.weight_version} {'bit-exact' if bad == 0 else 'WRONG'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT)
    args = ap.parse_args()
    failures = 0

    spec = refit.ModelSpec.from_config(args.checkpoint)
    print(spec)

    # The trainer's shards (one dict per rank) and the engine's empty tensors.
    trainer = [refit.load_shards(args.checkpoint, TRAINER, r, WORLD) for r in range(WORLD)]
    engine = [refit.empty_shards(spec, ENGINE, r, WORLD) for r in range(WORLD)]
    ptrs = [{n: t.data_ptr() for n, t in e.items()} for e in engine]

    # ShardedModel holds the tensors by reference: build them once.
    src = [refit.ShardedModel(spec, TRAINER, r, WORLD, trainer[r]) for r in range(WORLD)]
    dst = [refit.ShardedModel(spec, ENGINE, r, WORLD, engine[r]) for r in range(WORLD)]

    # Refit 1: the engine must now hold exactly what a tp=1,ep=4 trainer would load.
    reports = refit.swap_model_weights(src, dst, "local")
    bad = [check(f"refit 1 rank {r}", engine[r],
                 refit.load_shards(args.checkpoint, ENGINE, r, WORLD)) for r in range(WORLD)]
    print_reports("refit 1", reports, bad)
    failures += sum(bad)
    if not all(rep.plan_built for rep in reports):
        print("WRONG: the first refit should build the plan")
        failures += 1

    # A training step changes the trainer's weights in place; refit again.
    for r in range(WORLD):
        fake_optimizer_step(trainer[r])
    stepped = [{n: t.clone() for n, t in trainer[r].items()} for r in range(WORLD)]
    reports = refit.swap_model_weights(src, dst, "local")
    if any(rep.plan_built for rep in reports):
        print("WRONG: the second refit should reuse the cached plan")
        failures += 1

    # Both refits wrote the engine's tensors in place (same storage as before).
    moved = sum(t.data_ptr() != ptrs[r][n] for r in range(WORLD) for n, t in engine[r].items())
    failures += moved

    # Check the engine against the stepped trainer by refitting it back into
    # fresh tp=2,ep=2 tensors (the reverse direction plans once, here).
    back = [refit.empty_shards(spec, TRAINER, r, WORLD) for r in range(WORLD)]
    back_models = [refit.ShardedModel(spec, TRAINER, r, WORLD, back[r]) for r in range(WORLD)]
    back_reports = refit.swap_model_weights(dst, back_models, "local")
    bad = [check(f"refit 2 rank {r}", back[r], stepped[r]) for r in range(WORLD)]
    print_reports("refit 2", reports, bad)
    print_reports("refit back", back_reports, bad)
    failures += sum(bad)

    print(f"engine tensors written in place by refits 1 and 2: {'yes' if moved == 0 else f'NO ({moved} moved)'}")
    print("PASS" if failures == 0 else f"FAIL ({failures} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
