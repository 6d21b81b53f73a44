#!/usr/bin/env bash
# Times `refit run` and the PyTorch baseline (bench/torch_reshard.py) on the
# same plan and prints refit time / torch time.
# Usage: bench/compare_torch.sh --checkpoint DIR --src L --dst L --world N
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$ROOT/build/refit" run "$@" --baseline --json "$tmp/refit.json" \
  --dump-plan "$tmp/plan.json"
# Same number of threads as cores, like the refit (Debian torch defaults to 1).
/usr/bin/python3 "$ROOT/bench/torch_reshard.py" "$tmp/plan.json" \
  --threads "$(nproc)" >"$tmp/torch.json"
/usr/bin/python3 - "$tmp/refit.json" "$tmp/torch.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = json.load(open(sys.argv[2]))
print(f"# torch baseline ({t['torch_threads']} threads, {t['pieces']} copy_ calls): "
      f"{t['torch_ms_median']:.3f} ms median, {t['torch_ms_min']:.3f} ms min")
print(f"# refit / torch time (median) = {r['refit_ms_median'] / t['torch_ms_median']:.3f}")
PY
