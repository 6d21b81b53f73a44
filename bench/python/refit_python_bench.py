#!/usr/bin/python3
"""Benchmark of refit's Python package against refit's C++ and plain PyTorch.

Measures, in one run:

(a) Python call overhead of a cached swap. Tiny Qwen3-MoE checkpoint
    (data/checkpoints/agilerl-tiny-qwen3-moe), tp=2,ep=2 -> tp=1,ep=4 on 4
    "local" ranks. python_ms: median wall time of one
    ``refit.swap_model_weights(src, dst, "local")`` call (the plan is built by
    a warm-up call first). cpp_ms: median time of one C++ call of all ranks
    with views bound once (``refit._refit._repeat_local``), on the same
    LocalGroup. overhead_ms = python_ms - cpp_ms (goal <= 1 ms). The two are
    measured in interleaved rounds so that load from other processes hits both.

(b) GB/s of ``swap_model_weights(..., "local")`` on a 2-layer Qwen3-30B-A3B
    (synthetic checkpoint, created with ``build/refit synth`` if missing),
    tp=4,ep=2 -> tp=2,ep=4 on 8 local ranks. GB/s = destination bytes (sum of
    every destination tensor's nbytes, GB = 1e9 B) / median time of one swap.
    Compared with the C++ harness ``build/refit run ... --world 8 --baseline
    --json`` run by this script (before the Python side allocates its
    tensors: the harness needs ~18 GB itself) and once more after it freed
    them; ratio = median harness ms / Python median ms (the same as a GB/s
    ratio over the same bytes; the harness's own GB/s counts only moved
    bytes, without vocabulary padding rows), and the same ratio of best
    times, less sensitive to other processes' load. Also reported: the in-process C++ time of the same swap
    (``_repeat_local``, interleaved with the Python calls) and the harness's
    memcpy baseline.

(c) The same reshard done with plain PyTorch as a user would write it without
    refit: every destination tensor is assembled from narrow()-ed source
    tensors with ``copy_`` (views precomputed once, which is PyTorch's best
    case; vocabulary padding rows ``zero_()``-ed). The geometry comes from
    ``spec.params`` and ``refit.rank_coordinates`` (Megatron rules: column =
    dim 0 split, row = dim 1 split, gated_column = [gate; up] each split,
    vocab = dim 0 padded to a multiple of 128*tp then split, replicated =
    whole). The local names are checked against ``refit.shard_shapes`` and the
    result is checked bit-exact (torch.equal, every tensor) against refit's
    destination before it is timed. Reported for 1 torch thread and for
    ``--torch-threads`` (default: nproc); ratio = refit GB/s / best PyTorch
    GB/s (goal >= 1.5). (c) also runs on the tiny model (a).

Prints the machine facts, a Markdown table and one JSON line (``JSON {...}``).

Run from the repository root with Debian's python (it has torch):

    PYTHONPATH=build/python /usr/bin/python3 bench/python/refit_python_bench.py [--iters N] [--skip-30b]

--iters N: timed swaps / reshards per measurement on the 30B (default 5);
--tiny-calls N: calls per measurement on the tiny model (default 300);
--skip-30b: only (a) and (c) on the tiny model;
--skip-harness: no `build/refit run`; --torch-threads T (default nproc).
The 30B part needs ~13 GB of memory in this process, ~18.5 GB for the
harness (not at the same time) and takes ~4-6 minutes on 2 cores.

On a machine shared with other work, compare the interleaved in-process
numbers (Python vs _repeat_local vs PyTorch, same rounds); the harness runs
at other moments (see loadavg in the JSON).
"""

import argparse
import gc
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import refit

ROOT = Path(__file__).resolve().parents[2]
REFIT_CLI = ROOT / "build" / "refit"
TINY_CKPT = ROOT / "data" / "checkpoints" / "agilerl-tiny-qwen3-moe"
Q30_CONFIG = ROOT / "data" / "model-configs" / "qwen3-30b-a3b"
Q30_CKPT = Path("/tmp/q30")

TINY = dict(src="tp=2,ep=2", dst="tp=1,ep=4", world=4)
Q30 = dict(src="tp=4,ep=2", dst="tp=2,ep=4", world=8)


# ----------------------------------------------------------------------------
# Helpers


def median(xs):
    return statistics.median(xs)


def ms_since(t0):
    return (time.perf_counter() - t0) * 1e3


def machine_facts(torch_threads):
    mem = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            mem[k] = int(v.split()[0]) * 1024
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "torch_version": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "torch_threads_used": torch_threads,
        "mem_total_gb": round(mem["MemTotal"] / 1e9, 1),
        "mem_available_gb": round(mem["MemAvailable"] / 1e9, 1),
        "loadavg_at_start": " ".join(load),
        "python": sys.version.split()[0],
    }


def loadavg():
    """The 1-minute load average (other processes compete for the cores)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def nbytes(tensors_per_rank):
    return sum(t.numel() * t.element_size()
               for ts in tensors_per_rank for t in ts.values())


def sharded_models(spec, layout, world, tensors_per_rank):
    return [refit.ShardedModel(spec, layout, r, world, tensors_per_rank[r])
            for r in range(world)]


def load_side(ckpt, spec, cfg):
    """Source tensors loaded from the checkpoint, zeroed destinations."""
    w = cfg["world"]
    src = [refit.load_shards(ckpt, cfg["src"], r, w) for r in range(w)]
    dst = [refit.empty_shards(spec, cfg["dst"], r, w) for r in range(w)]
    return src, dst


# ----------------------------------------------------------------------------
# Plain PyTorch reshard (c): Megatron's sharding rules, applied by hand.


def _split_dim(shard):
    return {"replicated": None, "column": 0, "gated_column": 0, "vocab": 0,
            "row": 1}[shard]


def _pieces(p, size, r):
    """Rows (along the split dim) of logical parameter p that TP rank r of
    `size` holds: [(logical_lo, logical_hi, local_lo)]. Vocabulary padding rows
    are not listed (the caller zeroes them)."""
    kind, dim = p["shard"], _split_dim(p["shard"])
    n_logical = p["shape"][dim]
    if kind in ("column", "row"):
        assert n_logical % size == 0, (p["name"], size)
        n = n_logical // size
        return [(r * n, (r + 1) * n, 0)]
    if kind == "gated_column":
        assert n_logical % (2 * size) == 0, (p["name"], size)
        half = n_logical // 2
        h = half // size
        return [(r * h, (r + 1) * h, 0), (half + r * h, half + (r + 1) * h, h)]
    if kind == "vocab":
        padded = math.ceil(n_logical / (128 * size)) * 128 * size
        n = padded // size
        lo, hi = r * n, min((r + 1) * n, n_logical)
        return [(lo, hi, 0)] if hi > lo else []
    raise ValueError(kind)


class Geometry:
    """Which tensors each rank of a layout holds, under which local name."""

    def __init__(self, spec, layout, world):
        self.layout = refit.ParallelLayout(layout)
        assert self.layout.pp == 1 and self.layout.cp == 1, "pp=1, cp=1 only"
        self.world = world
        self.coords = [refit.rank_coordinates(spec, layout, r, world)
                       for r in range(world)]
        self.params = spec.params
        # rank -> [(param index, local name)]
        self.held = []
        for r in range(world):
            c = self.coords[r]
            held = []
            for i, p in enumerate(self.params):
                name = p["name"]
                if p["expert"] >= 0:
                    first = c["ep"] * c["experts_per_rank"]
                    if not first <= p["expert"] < first + c["experts_per_rank"]:
                        continue
                    name = re.sub(r"\d+$", str(p["expert"] - first), name)
                held.append((i, name))
            self.held.append(held)
        self._check_names(spec, layout)

    def _check_names(self, spec, layout):
        for r in range(self.world):
            want = refit.shard_shapes(spec, layout, r, self.world)
            got = {name: i for i, name in self.held[r]}
            assert set(got) == set(want), (
                f"rank {r} of {layout}: local names differ from shard_shapes: "
                f"{sorted(set(got) ^ set(want))[:6]}")
            for name, i in got.items():
                p = self.params[i]
                dim = _split_dim(p["shard"])
                shape = list(p["shape"])
                if dim is not None:
                    size = self.tp_size(p)
                    shape[dim] = sum(
                        hi - lo for lo, hi, _ in _pieces(p, size, self.tp_rank(r, p)))
                    if p["shard"] == "vocab":
                        padded = math.ceil(p["shape"][0] / (128 * size)) * 128 * size
                        shape[0] = padded // size
                assert tuple(shape) == tuple(want[name][0]), (r, name, shape, want[name])

    def tp_size(self, p):
        return self.layout.tp if p["tp_group"] == "dense" else self.layout.etp

    def tp_rank(self, r, p):
        return self.coords[r]["tp" if p["tp_group"] == "dense" else "etp"]


def torch_reshard_plan(spec, cfg, src_tensors, dst_tensors, dst_ranks=None):
    """The (dst view, src view) pairs and zero views of the reshard
    src_tensors (cfg["src"]) -> dst_tensors (cfg["dst"]); dst_tensors maps
    each rank in dst_ranks (default: all) to its {local name: tensor}."""
    w = cfg["world"]
    sg, dg = Geometry(spec, cfg["src"], w), Geometry(spec, cfg["dst"], w)
    # (param index, source TP rank) -> the first source rank's tensor.
    src_of = {}
    for r in range(w):
        for i, name in sg.held[r]:
            src_of.setdefault((i, sg.tp_rank(r, sg.params[i])), src_tensors[r][name])
    copies, zeros = [], []
    for r in (range(w) if dst_ranks is None else dst_ranks):
        for i, name in dg.held[r]:
            p = dg.params[i]
            out = dst_tensors[r][name]
            dim = _split_dim(p["shard"])
            if dim is None:
                copies.append((out, src_of[(i, 0)]))
                continue
            s_size = sg.tp_size(p)
            filled = 0
            for a, b, ld in _pieces(p, dg.tp_size(p), dg.tp_rank(r, p)):
                filled += b - a
                for t in range(s_size):
                    for c, d, ls in _pieces(p, s_size, t):
                        lo, hi = max(a, c), min(b, d)
                        if lo < hi:
                            copies.append((out.narrow(dim, ld + lo - a, hi - lo),
                                           src_of[(i, t)].narrow(dim, ls + lo - c, hi - lo)))
            if filled < out.shape[dim]:  # vocabulary padding rows
                zeros.append(out.narrow(dim, filled, out.shape[dim] - filled))
    return copies, zeros


def run_torch_reshard(plan):
    copies, zeros = plan
    for d, s in copies:
        d.copy_(s)
    for z in zeros:
        z.zero_()


def verify_torch_reshard(spec, cfg, src, refit_dst):
    """Runs the PyTorch reshard rank by rank into fresh tensors filled with a
    sentinel and compares every tensor with refit's destination
    (torch.equal). Returns (tensors checked, mismatching names)."""
    checked, bad = 0, []
    for r in range(cfg["world"]):
        fresh = {n: torch.full_like(t, 7) for n, t in refit_dst[r].items()}
        run_torch_reshard(torch_reshard_plan(spec, cfg, src, {r: fresh}, [r]))
        for n, t in refit_dst[r].items():
            checked += 1
            if not torch.equal(fresh[n], t):
                bad.append(f"rank {r} {n}")
        del fresh
    return checked, bad


def time_torch(plan, iters, threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run_torch_reshard(plan)  # warm-up
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            run_torch_reshard(plan)
            times.append(ms_since(t0))
        return times
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------
# (a) Python call overhead on the tiny model


def bench_overhead(calls, rounds, torch_threads):
    cfg, w = TINY, TINY["world"]
    spec = refit.ModelSpec.from_config(TINY_CKPT)
    src_t, dst_t = load_side(TINY_CKPT, spec, cfg)
    src = sharded_models(spec, cfg["src"], w, src_t)
    dst = sharded_models(spec, cfg["dst"], w, dst_t)

    reports = refit.swap_model_weights(src, dst, "local")  # builds the plan
    assert all(rep.plan_built for rep in reports)
    group = refit._swap._local_groups[(w, "cpu")]
    refit._refit._repeat_local(group, src, dst, 10)  # warm-up of the C++ path
    reports = refit.swap_model_weights(src, dst, "local")
    assert not any(rep.plan_built for rep in reports), "plan not cached"

    py_ms, cpp_ms = [], []
    per_round = max(1, calls // rounds)
    for _ in range(rounds):
        for _ in range(per_round):
            t0 = time.perf_counter()
            refit.swap_model_weights(src, dst, "local")
            py_ms.append(ms_since(t0))
        cpp_ms.append(refit._refit._repeat_local(group, src, dst, per_round))

    # (c) on the tiny model: correctness of the PyTorch reshard, and its time.
    checked, bad = verify_torch_reshard(spec, cfg, src_t, dst_t)
    plan = torch_reshard_plan(spec, cfg, src_t, dst_t)
    torch_ms = time_torch(plan, calls, torch_threads)
    py, cpp = median(py_ms), median(cpp_ms)
    return {
        "model": "agilerl-tiny-qwen3-moe", "src": cfg["src"], "dst": cfg["dst"],
        "world": w, "calls": per_round * rounds, "rounds": rounds,
        "tensors_src": sum(len(t) for t in src_t),
        "tensors_dst": sum(len(t) for t in dst_t),
        "dst_bytes": nbytes(dst_t),
        "python_ms": py, "python_ms_min": min(py_ms),
        "cpp_ms": cpp, "cpp_ms_min": min(cpp_ms),
        "overhead_ms": py - cpp,
        "overhead_goal_met": py - cpp <= 1.0,
        "torch_ms": median(torch_ms), "torch_copies": len(plan[0]),
        "torch_checked_tensors": checked, "torch_mismatches": bad,
    }


# ----------------------------------------------------------------------------
# (b) + (c) on the 2-layer Qwen3-30B-A3B


def ensure_q30():
    if (Q30_CKPT / "model.safetensors").exists():
        return
    cmd = [str(REFIT_CLI), "synth", "--config", str(Q30_CONFIG), "--out",
           str(Q30_CKPT), "--layers", "2"]
    print("# creating", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def run_cpp_harness(iters):
    """build/refit run on the same checkpoint and layouts; its JSON."""
    cfg = Q30
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        cmd = [str(REFIT_CLI), "run", "--checkpoint", str(Q30_CKPT),
               "--src", cfg["src"], "--dst", cfg["dst"], "--world",
               str(cfg["world"]), "--iters", str(iters), "--baseline",
               "--json", str(out)]
        print("# " + " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            print("#   " + line, flush=True)
        result = json.loads(out.read_text())
    result["command"] = " ".join(cmd)
    result["loadavg_after"] = loadavg()
    return result


def bench_q30(iters, torch_threads):
    cfg, w = Q30, Q30["world"]
    spec = refit.ModelSpec.from_config(Q30_CKPT)
    t0 = time.perf_counter()
    src_t, dst_t = load_side(Q30_CKPT, spec, cfg)
    load_s = ms_since(t0) / 1e3
    src = sharded_models(spec, cfg["src"], w, src_t)
    dst = sharded_models(spec, cfg["dst"], w, dst_t)
    dst_bytes, src_bytes = nbytes(dst_t), nbytes(src_t)

    t0 = time.perf_counter()
    reports = refit.swap_model_weights(src, dst, "local")  # plans
    first_ms = ms_since(t0)
    assert all(rep.plan_built for rep in reports)
    moved = sum(rep.bytes_local + rep.bytes_received for rep in reports)

    # PyTorch reshard: bit-exact against refit's destination, then its views.
    checked, bad = verify_torch_reshard(spec, cfg, src_t, dst_t)
    gc.collect()
    plan = torch_reshard_plan(spec, cfg, src_t, dst_t)

    group = refit._swap._local_groups[(w, "cpu")]
    # Warm-ups, then interleaved rounds: Python swap, C++ swap, PyTorch
    # (1 thread and torch_threads), so other processes' load hits all alike.
    refit.swap_model_weights(src, dst, "local")
    refit._refit._repeat_local(group, src, dst, 1)
    py_ms, cpp_ms, torch1_ms, torchn_ms = [], [], [], []
    loads = [loadavg()]
    for i in range(iters):
        # Python and C++ take turns going first: neither always runs right
        # after the PyTorch reshard (cold caches, torch's worker threads).
        if i % 2:
            cpp_ms.append(refit._refit._repeat_local(group, src, dst, 1))
        t0 = time.perf_counter()
        reports = refit.swap_model_weights(src, dst, "local")
        py_ms.append(ms_since(t0))
        if i % 2 == 0:
            cpp_ms.append(refit._refit._repeat_local(group, src, dst, 1))
        torch1_ms += time_torch(plan, 1, 1)
        if torch_threads != 1:
            torchn_ms += time_torch(plan, 1, torch_threads)
        loads.append(loadavg())
    if torch_threads == 1:
        torchn_ms = torch1_ms
    # The per-call cost of the Python entry at this size: a cached prepare
    # binds every tensor's view and dispatches to the ranks, moving nothing.
    bind_ms = []
    for _ in range(20):
        t0 = time.perf_counter()
        refit.prepare_swap_model_weights(src, dst, "local")
        bind_ms.append(ms_since(t0))

    py, cpp = median(py_ms), median(cpp_ms)
    t1, tn = median(torch1_ms), median(torchn_ms)
    gbps = lambda ms: dst_bytes / (ms * 1e-3) / 1e9  # noqa: E731
    torch_best = min(t1, tn)
    r = {
        "model": "qwen3-30b-a3b (2 layers, synthetic)", "checkpoint": str(Q30_CKPT),
        "src": cfg["src"], "dst": cfg["dst"], "world": w, "iters": iters,
        "load_s": load_s, "src_bytes": src_bytes, "dst_bytes": dst_bytes,
        "moved_bytes": moved, "tensors_dst": sum(len(t) for t in dst_t),
        "first_swap_ms": first_ms,
        "python_ms": py, "python_ms_min": min(py_ms), "python_gbps": gbps(py),
        "inproc_cpp_ms": cpp, "inproc_cpp_gbps": gbps(cpp),
        "python_over_inproc_cpp": cpp / py,
        # Each round's pair (same moment, same load), then the median.
        "python_over_inproc_cpp_paired": statistics.median(
            c / p for c, p in zip(cpp_ms, py_ms)),
        "tensors_bound": sum(len(t) for t in src_t) + sum(len(t) for t in dst_t),
        "cached_prepare_ms": median(bind_ms),
        "torch_1t_ms": t1, "torch_1t_gbps": gbps(t1),
        "torch_threads": torch_threads, "torch_nt_ms": tn, "torch_nt_gbps": gbps(tn),
        "torch_copies": len(plan[0]), "torch_checked_tensors": checked,
        "torch_mismatches": bad,
        "refit_over_torch": torch_best / py,
        "refit_over_torch_1t": t1 / py,
        "loadavg_during": loads,
        "samples_ms": {"python": py_ms, "inproc_cpp": cpp_ms,
                       "torch_1t": torch1_ms, "torch_nt": torchn_ms},
        "refit_over_torch_goal_met": torch_best / py >= 1.5,
    }
    del plan, src, dst, src_t, dst_t
    gc.collect()
    return r


def compare_with_harness(b, runs):
    """Adds the comparison of the Python swap (b) with the harness runs
    (medians over the runs of each run's median / min / memcpy median)."""
    gbps = lambda ms: b["dst_bytes"] / (ms * 1e-3) / 1e9  # noqa: E731
    h_ms = median([h["refit_ms_median"] for h in runs])
    h_min = min(h["refit_ms_min"] for h in runs)
    mem = [h["memcpy_ms_median"] for h in runs if h.get("memcpy_ms_median")]
    mem_ms = median(mem) if mem else None
    py = b["python_ms"]
    b.update({
        "harness_runs": len(runs),
        "harness_ms_per_run": [h["refit_ms_median"] for h in runs],
        "harness_ms": h_ms, "harness_ms_min": h_min, "harness_gbps": gbps(h_ms),
        "harness_gbps_own": median([h["gbps"] for h in runs]),
        "harness_wrong": sum(h["wrong"] for h in runs),
        "python_over_harness": h_ms / py,
        "python_over_harness_goal_met": h_ms / py >= 0.95,
        "python_over_harness_min": h_min / b["python_ms_min"],
        "memcpy_ms": mem_ms,
        "memcpy_gbps": gbps(mem_ms) if mem_ms else None,
        "harness_over_memcpy": mem_ms / h_ms if mem_ms else None,
        "python_over_memcpy": mem_ms / py if mem_ms else None,
    })


# ----------------------------------------------------------------------------
# Report


def table(facts, a, b):
    f = lambda x, d=3: "n/a" if x is None else f"{x:.{d}f}"  # noqa: E731
    rows = [
        "| measurement | value | goal |",
        "|---|---|---|",
        f"| machine | nproc={facts['nproc']}, torch {facts['torch_version']} "
        f"(threads default {facts['torch_threads_default']}, used "
        f"{facts['torch_threads_used']}), load {facts['loadavg_at_start']} | |",
        f"| (a) tiny {a['src']} -> {a['dst']}, {a['world']} ranks: python_ms "
        f"(median of {a['calls']} swap_model_weights) | {f(a['python_ms'])} | |",
        f"| (a) cpp_ms (median of {a['rounds']} _repeat_local medians) | {f(a['cpp_ms'])} | |",
        f"| (a) overhead_ms = python - cpp | {f(a['overhead_ms'])} | <= 1 ms: "
        f"{'met' if a['overhead_goal_met'] else 'NOT met'} |",
        f"| (a) tiny PyTorch reshard ({a['torch_copies']} copy_), "
        f"bit-exact {a['torch_checked_tensors'] - len(a['torch_mismatches'])}/"
        f"{a['torch_checked_tensors']} | {f(a['torch_ms'])} ms | |",
    ]
    if b is not None:
        gb = b["dst_bytes"] / 1e9
        rows += [
            f"| (b) 30B-A3B 2L {b['src']} -> {b['dst']}, {b['world']} ranks, "
            f"{gb:.3f} GB dst: Python swap | {f(b['python_ms'], 1)} ms, "
            f"{f(b['python_gbps'], 2)} GB/s | |",
            f"| (b) C++ in-process (_repeat_local) | {f(b['inproc_cpp_ms'], 1)} ms, "
            f"{f(b['inproc_cpp_gbps'], 2)} GB/s | |",
        ]
        if "harness_ms" in b:
            rows += [
                f"| (b) C++ harness `refit run` (median of {b['harness_runs']} "
                f"runs x {b['iters']} iters; per run "
                f"{', '.join(f(x, 1) for x in b['harness_ms_per_run'])} ms) | "
                f"{f(b['harness_ms'], 1)} ms, {f(b['harness_gbps'], 2)} GB/s "
                f"({f(b['harness_gbps_own'], 2)} GB/s by its moved bytes) | |",
                f"| (b) ratio Python / C++ harness (GB/s, medians) | "
                f"{f(b['python_over_harness'])} | >= 0.95: "
                f"{'met' if b['python_over_harness_goal_met'] else 'NOT met'} |",
                f"| (b) ratio Python / C++ harness (GB/s, best times: "
                f"{f(b['python_ms_min'], 1)} vs {f(b['harness_ms_min'], 1)} ms) | "
                f"{f(b['python_over_harness_min'])} | |",
                f"| (b) memcpy baseline (harness) | {f(b['memcpy_ms'], 1)} ms, "
                f"{f(b['memcpy_gbps'], 2)} GB/s; harness/memcpy "
                f"{f(b['harness_over_memcpy'])}, Python/memcpy "
                f"{f(b['python_over_memcpy'])} | |",
            ]
        rows += [
            f"| (b) ratio Python / C++ in-process (interleaved) | "
            f"{f(b['python_over_inproc_cpp'])} | |",
            f"| (b) the same, median of the {b['iters']} per-round ratios | "
            f"{f(b['python_over_inproc_cpp_paired'])} | >= 0.95 |",
            f"| (b) per-call Python binding cost: cached prepare_swap_model_weights "
            f"({b['tensors_bound']} tensors) | {f(b['cached_prepare_ms'])} ms | |",
            f"| (c) PyTorch reshard, 1 thread ({b['torch_copies']} copy_) | "
            f"{f(b['torch_1t_ms'], 1)} ms, {f(b['torch_1t_gbps'], 2)} GB/s | |",
            f"| (c) PyTorch reshard, {b['torch_threads']} threads | "
            f"{f(b['torch_nt_ms'], 1)} ms, {f(b['torch_nt_gbps'], 2)} GB/s | |",
            f"| (c) PyTorch bit-exact vs refit | "
            f"{b['torch_checked_tensors'] - len(b['torch_mismatches'])}/"
            f"{b['torch_checked_tensors']} tensors | all |",
            f"| (c) ratio refit GB/s / PyTorch 1 thread GB/s (torch's default "
            f"here: {facts['torch_threads_default']}) | {f(b['refit_over_torch_1t'])} | |",
            f"| (c) ratio refit GB/s / best PyTorch GB/s | "
            f"{f(b['refit_over_torch'])} | >= 1.5: "
            f"{'met' if b['refit_over_torch_goal_met'] else 'NOT met'} |",
        ]
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=5,
                    help="timed swaps / reshards per measurement on the 30B")
    ap.add_argument("--tiny-calls", type=int, default=300,
                    help="timed calls per measurement on the tiny model")
    ap.add_argument("--rounds", type=int, default=10,
                    help="interleaved Python / C++ rounds on the tiny model")
    ap.add_argument("--torch-threads", type=int,
                    default=len(os.sched_getaffinity(0)),
                    help="torch intra-op threads for the PyTorch reshard "
                         "(besides 1); default nproc")
    ap.add_argument("--skip-30b", action="store_true",
                    help="only (a) (and (c) on the tiny model)")
    ap.add_argument("--skip-harness", action="store_true",
                    help="do not run build/refit run (b)")
    args = ap.parse_args()

    facts = machine_facts(args.torch_threads)
    print("# machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()), flush=True)

    harness_runs = []
    if not args.skip_30b:
        ensure_q30()
        if not args.skip_harness:
            # While this process holds no large tensors (the harness needs
            # ~18 GB); once more after the Python side freed its tensors.
            harness_runs.append(run_cpp_harness(args.iters))

    print(f"# (a) tiny model: Python call overhead (load {loadavg()})", flush=True)
    a = bench_overhead(args.tiny_calls, args.rounds, args.torch_threads)
    b = None
    if not args.skip_30b:
        print(f"# (b)+(c) Qwen3-30B-A3B, 2 layers (load {loadavg()})", flush=True)
        b = bench_q30(args.iters, args.torch_threads)
        print(f"# python {b['python_ms']:.1f} ms, in-process C++ "
              f"{b['inproc_cpp_ms']:.1f} ms, torch {b['torch_1t_ms']:.1f} / "
              f"{b['torch_nt_ms']:.1f} ms (load {loadavg()})", flush=True)
        if harness_runs:
            harness_runs.append(run_cpp_harness(args.iters))
            compare_with_harness(b, harness_runs)

    print()
    print(table(facts, a, b))
    print()
    print("JSON " + json.dumps({"machine": facts, "overhead": a, "q30": b,
                                "harness": harness_runs}))
    bad = a["torch_mismatches"] + (b["torch_mismatches"] if b else [])
    if bad:
        print("# PyTorch reshard differs from refit:", bad[:10], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
