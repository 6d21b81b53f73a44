#!/usr/bin/env bash
# End-to-end tests of `refit run` under mpirun, one rank per process.
#   mpi_run_test.sh CASE REFIT MPIEXEC [MPIEXEC_FLAGS...]
# CASE: collocated, non_collocated, small_staging (bit-exact refits whose
# totals equal the embedded run's); baseline (--baseline: the MPI_Alltoallv
# line and JSON keys, exit 0); bad_layout, world_mismatch,
# missing_checkpoint, inputs_differ (every rank exits 2 with one line naming
# the failing rank's error); dead_peer (a rank stops: the others fail within
# --timeout naming it); bench_collocated, bench_non_collocated (`refit bench
# --transport mpi`: #wrong 0, the Alltoallv columns, scaled bytes equal to
# the embedded bench's); bench_world_mismatch (every rank exits 2 naming the
# scenario's world); bench_no_mpirun (without mpirun: one line, exit 2);
# dst_fp8_block, dst_mxfp8, dst_bf16 (--dst-dtype: bit-exact, the same
# "# formats:" line and plan totals as the embedded run); save (--save:
# files byte-identical to the embedded run's, collocated into block FP8 and
# non-collocated); dump_plan (--dump-plan equal to the embedded run's);
# fp8_source_keep (a block-FP8 checkpoint kept as FP8: formats line and
# saved files equal to the embedded run's); fanout (--fanout-gpus-per-node:
# bit-exact with the embedded run's totals and forwarded bytes, plain and
# block FP8); bench_fanout (`refit bench --fanout node --transport mpi`:
# #wrong 0, scaled bytes equal to the embedded bench's); verify_checksum
# (--verify checksum: bit-exact, the same "# verify checksum" line as the
# embedded run, collocated and not).
set -euo pipefail

case_name=$1
refit=$2
shift 2
mpiexec=("$@")
checkpoint="$(cd "$(dirname "$0")/../../../.." && pwd)/data/checkpoints/agilerl-tiny-qwen3-moe"
tmp=$(mktemp -d)
victim=""
cleanup() {
  if [ -n "$victim" ]; then kill -KILL "$victim" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# A shell command that runs its arguments with RANK set to this process's
# rank, so one rank can be given other input than the rest.
# shellcheck disable=SC2016  # expanded by that shell
per_rank='RANK=${OMPI_COMM_WORLD_RANK:-$PMI_RANK}; eval "exec $0"'

fail() {
  echo "FAIL ($case_name): $*"
  echo "--- output ---"
  cat "$tmp/out"
  exit 1
}

# mpi NP ARGS...: runs ARGS under mpirun; output in $tmp/out, status in $rc.
mpi() {
  local np=$1
  shift
  echo "\$ mpirun -np $np $*"
  rc=0
  timeout 50 "${mpiexec[@]}" -np "$np" "$@" >"$tmp/out" 2>&1 || rc=$?
}

# The table row (tensors ... #wrong) of `refit run` output in file $1.
row() { grep -E '^ +[0-9]+ +[0-9]+ ' "$1" | tail -n 1; }

# bit_exact NP ARGS...: the MPI run exits 0 with #wrong 0, and its plan
# totals (tensors, bytes_remote, bytes_local, messages) equal the embedded
# run's.
bit_exact() {
  local np=$1
  shift
  mpi "$np" "$refit" run "$@"
  [ "$rc" -eq 0 ] || fail "exit status $rc, expected 0"
  local got
  got=$(row "$tmp/out")
  [ "$(awk '{print $NF}' <<<"$got")" = 0 ] || fail "#wrong is not 0"
  "$refit" run "$@" >"$tmp/embedded" 2>&1 ||
    fail "embedded run failed: $(cat "$tmp/embedded")"
  [ "$(awk '{print $1, $2, $3, $4}' <<<"$got")" = \
    "$(row "$tmp/embedded" | awk '{print $1, $2, $3, $4}')" ] ||
    fail "plan totals differ from the embedded run: $(row "$tmp/embedded")"
  echo "ok: $got"
}

# same_line REGEX NP ARGS...: bit_exact, and the line matching REGEX
# equals the embedded run's.
same_line() {
  local pattern=$1
  shift
  bit_exact "$@"
  local got want
  got=$(grep "$pattern" "$tmp/out") || fail "no '$pattern' line"
  want=$(grep "$pattern" "$tmp/embedded") ||
    fail "the embedded run has no '$pattern' line"
  [ "$got" = "$want" ] || fail "'$pattern' line differs from the embedded run's: $want"
  echo "ok: $got"
}

# formats NP ARGS...: the "# formats:" line (wire bytes included) equals
# the embedded run's.
formats() {
  same_line '^# formats: ' "$@"
}

# same_save NP ARGS...: `run ARGS --save` under mpirun writes the files the
# embedded run writes, byte for byte, and prints one "# saved" line each.
same_save() {
  local np=$1
  shift
  mpi "$np" "$refit" run "$@" --iters 1 --save "$tmp/mpi_save"
  [ "$rc" -eq 0 ] || fail "exit status $rc, expected 0"
  "$refit" run "$@" --iters 1 --save "$tmp/embedded_save" >"$tmp/embedded" 2>&1 ||
    fail "embedded run failed: $(cat "$tmp/embedded")"
  [ "$(grep '^# saved ' "$tmp/out" | sed "s|$tmp/mpi_save/||")" = \
    "$(grep '^# saved ' "$tmp/embedded" | sed "s|$tmp/embedded_save/||")" ] ||
    fail "'# saved' lines differ from the embedded run's: $(grep '^# saved ' "$tmp/embedded")"
  [ "$(ls "$tmp/mpi_save")" = "$(ls "$tmp/embedded_save")" ] ||
    fail "files differ: $(ls "$tmp/mpi_save") vs $(ls "$tmp/embedded_save")"
  local f n=0
  for f in "$tmp/embedded_save"/*; do
    cmp "$f" "$tmp/mpi_save/$(basename "$f")" ||
      fail "$(basename "$f") differs from the embedded run's"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || fail "no file saved"
  echo "ok: $n files identical ($*)"
  rm -rf "$tmp/mpi_save" "$tmp/embedded_save"
}

# input_error NP PATTERN ARGS...: every one of the NP ranks prints one line
# "refit: ..." matching PATTERN, and mpirun exits 2.
input_error() {
  local np=$1 pattern=$2
  shift 2
  mpi "$np" "$@"
  [ "$rc" -eq 2 ] || fail "exit status $rc, expected 2"
  local lines
  lines=$(grep -c '^refit: ' "$tmp/out" || true)
  [ "$lines" -eq "$np" ] || fail "$lines lines 'refit: ...', expected $np"
  [ "$(grep -c -E "^refit: $pattern" "$tmp/out" || true)" -eq "$np" ] ||
    fail "not every line matches 'refit: $pattern'"
  echo "ok: $(grep -m 1 '^refit: ' "$tmp/out")"
}

# alive PID: the process exists and is not a zombie (a container's init may
# never reap the ranks mpirun leaves behind).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }  # the fields after "pid (name) "; the first is the state
  [[ $stat != Z* ]]
}

# A rank stops (SIGSTOP) in the middle of the refits: every other rank must
# give up within --timeout, naming it, and the whole job must end.
dead_peer() {
  local timeout_s=5 stopped=2
  mkdir "$tmp/pids"
  echo "\$ mpirun -np 4 $refit run --iters 100000000 --timeout $timeout_s" \
    "(rank $stopped stopped after 3 s)"
  rc=0
  # shellcheck disable=SC2016  # expanded by each rank's shell
  timeout 50 "${mpiexec[@]}" -np 4 sh -c \
    'd=$1; shift; echo $$ >"$d/${OMPI_COMM_WORLD_RANK:-$PMI_RANK}"
      exec "$0" run "$@"' \
    "$refit" "$tmp/pids" --iters 100000000 --timeout "$timeout_s" \
    >"$tmp/out" 2>&1 &
  local job=$!
  for _ in $(seq 100); do
    [ "$(find "$tmp/pids" -type f | wc -l)" -eq 4 ] && break
    sleep 0.1
  done
  sleep 3  # start-up (about 0.3 s) is over: the ranks are refitting
  victim=$(cat "$tmp/pids/$stopped")
  kill -STOP "$victim"
  local start end
  start=$(date +%s%N)
  wait "$job" || rc=$?
  end=$(date +%s%N)
  local ms=$(((end - start) / 1000000))
  echo "job ended ${ms} ms after rank $stopped stopped, exit status $rc"
  [ "$rc" -ne 0 ] || fail "exit status 0"
  [ "$ms" -le $(((timeout_s + 5) * 1000)) ] ||
    fail "the job took ${ms} ms to end, --timeout is ${timeout_s} s"
  grep -q -E "^refit: .*waited $timeout_s s .*(rank |ranks [0-9, ]*)$stopped\b" \
    "$tmp/out" || fail "no line names rank $stopped"
  sleep 1  # mpirun may return before its last processes are gone
  for r in 0 1 2 3; do
    ! alive "$(cat "$tmp/pids/$r")" || fail "rank $r still runs"
  done
  grep '^refit: ' "$tmp/out"
}

# bench_mpi NP ARGS...: `refit bench --transport mpi --scale 1` of one
# scenario on the bundled checkpoint's config exits 0 with wrong 0, prints
# refit ms, Alltoallv ms and their ratio, and moves as many bytes as the
# embedded bench's run of the same scenario.
bench_mpi() {
  local np=$1
  shift
  local args=(bench --model "$checkpoint" --scale 1 "$@")
  export TMPDIR=$tmp/work  # where the scaled checkpoint is written
  mkdir "$TMPDIR"
  mpi "$np" "$refit" "${args[@]}" --transport mpi --iters 2 \
    --json "$tmp/mpi.json"
  [ "$rc" -eq 0 ] || fail "exit status $rc, expected 0"
  local head row
  head=$(grep -E '^\| scenario ' "$tmp/out") || fail "no table header"
  [[ $head == *"| scale | wrong | refit ms | Alltoallv ms | refit/Alltoallv |" ]] ||
    fail "header lacks the Alltoallv columns: $head"
  row=$(grep -E '^\| cli/1 ' "$tmp/out") || fail "no table row"
  # The last five cells: scale, wrong, refit ms, Alltoallv ms, ratio.
  awk -F'|' '{ exit !($(NF-5) ~ /^ 1\/1 $/ && $(NF-4) == " 0 " &&
      $(NF-3) + 0 > 0 && $(NF-2) + 0 > 0 && $(NF-1) + 0 > 0) }' <<<"$row" ||
    fail "bad scale, wrong, refit ms, Alltoallv ms or ratio: $row"
  grep -Eq '"wrong": 0,?$' "$tmp/mpi.json" &&
    grep -q '"transport": "mpi"' "$tmp/mpi.json" &&
    grep -q '"scaled_alltoallv_ms"' "$tmp/mpi.json" &&
    grep -q '"scaled_refit_over_alltoallv"' "$tmp/mpi.json" ||
    fail "--json lacks wrong 0, transport, or the Alltoallv keys"
  "$refit" "${args[@]}" --json "$tmp/embedded.json" >"$tmp/embedded" 2>&1 ||
    fail "embedded bench failed: $(cat "$tmp/embedded")"
  local want
  want=$(grep '"scaled_bytes"' "$tmp/embedded.json")
  [ "$(grep '"scaled_bytes"' "$tmp/mpi.json")" = "$want" ] ||
    fail "scaled bytes differ from the embedded bench's: $want"
  [ -z "$(ls -A "$TMPDIR")" ] ||
    fail "left behind in the work directory: $(ls -A "$TMPDIR")"
  echo "ok: $row"
}

case "$case_name" in
  bench_collocated)
    bench_mpi 4 --src tp=2,ep=2 --dst tp=1,ep=4 --world 4
    ;;
  bench_non_collocated)
    bench_mpi 6 --src tp=2 --dst tp=1,ep=4 --src-world 2 --dst-world 4
    ;;
  bench_fanout)
    bench_mpi 8 --src tp=2,ep=2 --dst tp=1,ep=2 --src-world 4 --dst-world 4 \
      --gpus-per-node 4 --fanout node
    ;;
  bench_world_mismatch)
    input_error 4 'rank 0: scenario cli/1 has 6 ranks but mpirun started 4 ' \
      "$refit" bench --transport mpi --scale 1 --model "$checkpoint" \
      --src tp=2 --dst tp=1,ep=4 --src-world 2 --dst-world 4
    ;;
  bench_no_mpirun)
    echo "\$ $refit bench --transport mpi --suite refit-8gpu --scale 8"
    rc=0
    env -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE "$refit" bench --transport mpi \
      --suite refit-8gpu --scale 8 >"$tmp/out" 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || fail "exit status $rc, expected 2"
    [ "$(wc -l <"$tmp/out")" -eq 1 ] || fail "not one line"
    grep -q '^refit: --transport mpi runs one rank per process: start it under mpirun' \
      "$tmp/out" || fail "the line does not say to start it under mpirun"
    echo "ok: $(cat "$tmp/out")"
    ;;
  collocated)
    bit_exact 4
    ;;
  verify_checksum)
    same_line '^# verify checksum: ' 4 --verify checksum --iters 2
    same_line '^# verify checksum: ' 6 --src-world 2 --dst-world 4 \
      --src tp=2 --dst tp=1,ep=4 --verify checksum --iters 2
    ;;
  dst_fp8_block)
    formats 4 --dst-dtype fp8-block --iters 2
    # Sender-side: 32x32 blocks, whole on every shard.
    formats 4 --dst-dtype fp8-block --fp8-block 32 --quantize-on send --iters 2
    formats 6 --src tp=2 --dst tp=1,ep=4 --src-world 2 --dst-world 4 \
      --dst-dtype fp8-block --iters 2
    ;;
  dst_mxfp8)
    formats 4 --dst-dtype mxfp8 --iters 2
    formats 4 --dst-dtype mxfp8 --mxfp8-swizzled --iters 2
    ;;
  dst_bf16)
    formats 4 --dst-dtype bf16 --iters 2
    formats 4 --dst-dtype bf16 --cast-on recv --iters 2
    formats 4 --cast '*experts*=bf16' --iters 2
    ;;
  save)
    same_save 4 --dst-dtype fp8-block --fp8-block 32 --quantize-on send
    same_save 4 --dst-dtype mxfp8 --mxfp8-swizzled
    same_save 6 --src tp=2 --dst tp=1,ep=4 --src-world 2 --dst-world 4
    ;;
  fp8_source_keep)
    configs="$(dirname "$checkpoint")/../model-configs"
    "$refit" synth --config "$configs/kimi-k2-instruct" --out "$tmp/kfp8" \
      --scale 64 --layers 2 --dtype fp8-block --fp8-block-size 8 \
      >"$tmp/synth" 2>&1 || fail "synth failed: $(cat "$tmp/synth")"
    formats 8 --checkpoint "$tmp/kfp8" --src tp=2 --dst tp=4 --world 8 \
      --fp8-source keep --iters 2
    grep -q ' 782 kept as block FP8' "$tmp/out" || fail "not 782 kept"
    same_save 8 --checkpoint "$tmp/kfp8" --src tp=2 --dst tp=4 --world 8 \
      --fp8-source keep
    ;;
  dump_plan)
    for args in "" "--dst-dtype fp8-block" \
      "--src tp=2 --dst tp=1,ep=4 --src-world 2 --dst-world 4"; do
      np=4
      [[ $args == *src-world* ]] && np=6
      # shellcheck disable=SC2086  # $args holds several words
      mpi "$np" "$refit" run $args --iters 1 --dump-plan "$tmp/mpi.json"
      [ "$rc" -eq 0 ] || fail "exit status $rc, expected 0"
      # shellcheck disable=SC2086
      "$refit" run $args --iters 1 --dump-plan "$tmp/embedded.json" \
        >"$tmp/embedded" 2>&1 || fail "embedded run failed"
      cmp "$tmp/mpi.json" "$tmp/embedded.json" ||
        fail "--dump-plan differs from the embedded run's ($args)"
      grep -q '"pieces"' "$tmp/mpi.json" || fail "no pieces in the plan"
      echo "ok: --dump-plan $args: $(wc -c <"$tmp/mpi.json") bytes, identical"
    done
    ;;
  non_collocated)
    bit_exact 6 --src tp=2 --dst tp=1,ep=4 --src-world 2 --dst-world 4
    ;;
  engine_family)
    # vLLM destinations (EPLB placement with replicas) and SGLang block FP8
    # under mpirun: every tensor equals the engine reference, as embedded.
    same_line '^# engine reference ' 4 --src tp=2,ep=2 \
      --dst tp=2,ep=2,etp=1,placement=0:1:2:3:1:2:3:0 --dst-family vllm --iters 1
    grep -q ', 0 wrong$' "$tmp/out" || fail "engine tensors differ"
    deepseek="$(dirname "$checkpoint")/neural-api-tiny/deepseek_v2"
    same_line '^# engine reference ' 4 --checkpoint "$deepseek" \
      --src tp=2,ep=2,etp=1 --dst tp=1,ep=2,etp=1 --src-world 2 --dst-world 2 \
      --dst-family sglang --dst-dtype fp8-block --fp8-block 4 --iters 1
    grep -q ', 0 wrong$' "$tmp/out" || fail "engine tensors differ"
    ;;
  fanout)
    # Two destination replicas on the second node of 4: plain and block FP8
    # (32x32 blocks quantised by the sender, forwarded with their scales);
    # the same forwarded bytes as the embedded run.
    same_line '^# node fan-out ' 8 --src tp=2,ep=2 --dst tp=1,ep=2 --src-world 4 --dst-world 4 \
      --fanout-gpus-per-node 4 --iters 2
    formats 8 --src tp=2,ep=2 --dst tp=1,ep=2 --src-world 4 --dst-world 4 \
      --fanout-gpus-per-node 4 --dst-dtype fp8-block --fp8-block 32 \
      --quantize-on send --iters 2
    # Block-FP8 sources kept as FP8: leaders forward data with its scales.
    configs="$(dirname "$checkpoint")/../model-configs"
    "$refit" synth --config "$configs/kimi-k2-instruct" --out "$tmp/kfp8" \
      --scale 64 --layers 2 --dtype fp8-block --fp8-block-size 8 \
      >"$tmp/synth" 2>&1 || fail "synth failed: $(cat "$tmp/synth")"
    same_line '^# node fan-out ' 6 --checkpoint "$tmp/kfp8" --src tp=2 \
      --dst tp=1 --src-world 2 --dst-world 4 --fp8-source keep \
      --fanout-gpus-per-node 2 --iters 2
    ;;
  small_staging)
    # 1 KiB of staging: 128-byte chunks, most of them packed and unpacked.
    bit_exact 4 --src tp=2,ep=2 --dst tp=2,ep=1 --iters 2 \
      --max-staging-bytes=1024
    ;;
  baseline)
    mpi 4 "$refit" run --baseline --iters 2 --json "$tmp/json"
    [ "$rc" -eq 0 ] || fail "exit status $rc, expected 0"
    want='^# baseline MPI_Alltoallv of the same per-pair bytes: [0-9.]+ ms; '
    want+='refit/alltoallv time = [0-9.]+$'
    line=$(grep -E "$want" "$tmp/out") || fail "no baseline MPI_Alltoallv line"
    grep -q '"alltoallv_ms_median"' "$tmp/json" &&
      grep -q '"refit_over_alltoallv"' "$tmp/json" ||
      fail "--json lacks alltoallv_ms_median or refit_over_alltoallv"
    echo "ok: $line"
    ;;
  bad_layout)
    input_error 4 'rank 0: --dst: .*not divisible' "$refit" run --dst tp=3
    ;;
  world_mismatch)
    input_error 4 'rank 0: mpirun started 4 processes but the refit needs 6' \
      "$refit" run --src-world 2 --dst-world 4
    ;;
  missing_checkpoint)
    # Rank 2 alone misses its checkpoint (as a node without the file would).
    mkdir "$tmp/ckpt"
    for r in 0 1 3; do ln -s "$checkpoint" "$tmp/ckpt/rank$r"; done
    input_error 4 "rank 2: cannot read $tmp/ckpt/rank2" sh -c "$per_rank" \
      "'$refit' run --checkpoint \"$tmp/ckpt/rank\$RANK\""
    ;;
  inputs_differ)
    input_error 4 "rank 2's inputs differ from rank 0's" sh -c "$per_rank" \
      "'$refit' run --dst \$( [ \$RANK = 2 ] && echo tp=2 || echo tp=1,ep=4)"
    ;;
  dead_peer)
    dead_peer
    ;;
  *)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
