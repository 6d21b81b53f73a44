#!/usr/bin/env python3
"""One refit pass into two inference pools at once: a trainer (tp=2) on ranks
0-1 feeds a prefill pool (vLLM tensors, tp=2) on ranks 2-3 and a decode pool
(vLLM tensors, tp=1,ep=2) on ranks 4-5 of one 6-rank group (refit method
"local": every rank a thread of this process).

Each pool rank passes its model with its pool's rank offset, as a
(ShardedModel, rank_offset) tuple; a rank may also pass a list of them (a
main model and its MTP draft on the same GPUs). One call, one plan per pool
(built on the first call, cached after), one weight version for both.

Run:  PYTHONPATH=build/python python3 examples/python/refit_pools.py
"""

import argparse
import sys
from pathlib import Path

import torch

import refit

DEFAULT_CKPT = Path(__file__).resolve().parents[2] / "data/checkpoints/agilerl-tiny-qwen3-moe"
TRAINER = "tp=2"
POOLS = {"prefill": ("tp=2,family=vllm", 2, 2), "decode": ("tp=1,ep=2,family=vllm", 2, 4)}
WORLD = 6


def fake_optimizer_step(tensors):
    """A deterministic in-place update standing in for optimizer.step()."""
    with torch.no_grad():
        for t in tensors.values():
            if t.is_floating_point():
                t.add_(0.01 * torch.sign(t))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT)
    args = ap.parse_args()
    spec = refit.ModelSpec.from_config(args.checkpoint)

    trainer_t = [refit.load_shards(args.checkpoint, TRAINER, r, 2) for r in range(2)]
    trainer = [refit.ShardedModel(spec, TRAINER, r, 2, t) for r, t in enumerate(trainer_t)]
    targets = [None] * WORLD
    engine_t = {}
    for pool, (layout, world, offset) in POOLS.items():
        for r in range(world):
            t = refit.empty_shards(spec, layout, r, world)
            engine_t[(pool, r)] = t
            targets[offset + r] = (refit.ShardedModel(spec, layout, r, world, t), offset)

    failures = 0
    for step in range(3):
        for t in trainer_t:
            fake_optimizer_step(t)
        reports = refit.swap_model_weights(trainer + [None] * 4, targets, "local")
        for pool, (layout, world, offset) in POOLS.items():
            for r in range(world):
                want = refit.load_shards(args.checkpoint, layout, r, world)
                for _ in range(step + 1):
                    fake_optimizer_step(want)
                got = engine_t[(pool, r)]
                bad = [n for n in want if not torch.equal(got[n], want[n])]
                failures += len(bad)
                rep = reports[offset + r]
                print(f"[step {step}] {pool} rank {r} (group rank {offset + r}): "
                      f"plan_built={rep.plan_built} received={rep.bytes_received} "
                      f"version={rep.weight_version} {'bit-exact' if not bad else 'WRONG'}")
    print("PASS" if failures == 0 else "FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
