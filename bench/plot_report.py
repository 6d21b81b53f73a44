#!/usr/bin/python3
"""Charts of a `refit bench --out DIR` report (DIR/report.json), as PNG files
in DIR. Run with Debian's python3 and python3-matplotlib; `refit bench --out`
runs it.

  makespan_vs_tlb.png   modeled makespan beside the lower bound T_LB, per row
  gpu_memory.png        bytes on each row's most loaded GPU against the
                        budget (headroom x HBM)
  recv_per_rank.png     bytes each destination rank receives, for the
                        Kimi-K2 rows (the model of the kimi-k2 suite)

Usage: plot_report.py REPORT_JSON OUT_DIR
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def label(row):
    return f"{row['suite']}/{row['scenario']}"


def bar_chart(rows, height):
    """A figure wide enough for one labelled bar (group) per row."""
    fig, ax = plt.subplots(figsize=(max(8, 0.28 * len(rows) + 2), height))
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([label(r) for r in rows], rotation=90, fontsize=6)
    return fig, ax


def makespan_vs_tlb(rows, out):
    fig, ax = bar_chart(rows, 5)
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["t_lb_ms"] for r in rows], 0.4,
           label="T_LB (lower bound)")
    ax.bar([i + 0.2 for i in x], [r["makespan_ms"] for r in rows], 0.4,
           label="modeled makespan")
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("Refit time per configuration: modeled makespan vs T_LB")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "makespan_vs_tlb.png", dpi=120)
    plt.close(fig)


def gpu_memory(rows, gpu, out):
    fig, ax = bar_chart(rows, 5)
    colors = ["tab:green" if r["fits"] else "tab:red" for r in rows]
    ax.bar(range(len(rows)), [r["max_gpu_bytes"] / 1e9 for r in rows],
           color=colors)
    ax.axhline(gpu["budget_bytes"] / 1e9, color="black", linestyle="--",
               label=f"budget: {gpu['headroom']:.0%} of {gpu['hbm_gb']:g} GB")
    ax.axhline(gpu["hbm_gb"], color="gray", linestyle=":", label="HBM")
    ax.set_yscale("log")
    ax.set_ylabel("GB on the most loaded GPU (1e9 B)")
    ax.set_title("Per-GPU memory (green: fits, red: does not)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "gpu_memory.png", dpi=120)
    plt.close(fig)


def recv_per_rank(rows, out):
    kimi = [r for r in rows if r["model"].startswith("kimi-k2")]
    if not kimi:
        return
    fig, ax = plt.subplots(figsize=(9, 5))
    for r in kimi:
        recv = [b / 1e9 for b in r["recv_bytes_per_dst_rank"]]
        ax.plot(range(len(recv)), recv, marker=".", linewidth=1,
                label=f"{label(r)} {r['dst']}"
                + (f" ({r['dst_dtype']})" if r.get("dst_dtype") else ""))
    ax.set_yscale("log")
    ax.set_xlabel("destination rank")
    ax.set_ylabel("GB received (1e9 B, before conversion)")
    ax.set_title("Kimi-K2: bytes each destination rank receives")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "recv_per_rank.png", dpi=120)
    plt.close(fig)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    report = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    rows = report["rows"]
    if not rows:
        sys.exit(f"{sys.argv[1]}: no rows")
    makespan_vs_tlb(rows, out)
    gpu_memory(rows, report["gpu"], out)
    recv_per_rank(rows, out)


if __name__ == "__main__":
    main()
