#!/usr/bin/python3
"""PyTorch baseline for `refit run`: the same reshard done the way Megatron's
local copy path does it, one process slicing source tensors and `copy_`-ing
them into destination tensors.

Input: the plan written by `build/refit run --dump-plan PLAN.json` (every
shard's byte size and every piece as byte offsets, run length, run count and
strides). Output: one JSON line with min / median milliseconds.
Run with Debian's python3 (python3-torch): /usr/bin/python3.
"""
import argparse
import json
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("plan")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="where the shards live (cuda: one GPU, timed after "
                         "torch.cuda.synchronize())")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.plan) as f:
        plan = json.load(f)
    shards = {}
    for side, rank, param, nbytes in plan["shards"]:
        fill = 1 if side == "src" else 0
        shards[(side, rank, param)] = torch.full((nbytes,), fill, dtype=torch.uint8,
                                                 device=args.device)
    copies = []
    for (src_rank, src_param, dst_rank, dst_param, src_off, dst_off, run,
         nruns, src_stride, dst_stride) in plan["pieces"]:
        src = shards[("src", src_rank, src_param)]
        dst = shards[("dst", dst_rank, dst_param)]
        copies.append((dst.as_strided((nruns, run), (dst_stride, 1), dst_off),
                       src.as_strided((nruns, run), (src_stride, 1), src_off)))
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    times = []
    for i in range(args.iters + 1):
        sync()
        t0 = time.perf_counter()
        for dst, src in copies:
            dst.copy_(src)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times = times[1:]
    nbytes = sum(d.numel() for d, _ in copies)
    print(json.dumps({"torch_ms_min": min(times),
                      "torch_ms_median": statistics.median(times),
                      "bytes": nbytes, "pieces": len(copies),
                      "torch_threads": torch.get_num_threads(),
                      "device": args.device}))


if __name__ == "__main__":
    main()
