#!/usr/bin/env bash
# The main job: installs what is missing, builds, and refits the bundled real
# checkpoint (data/checkpoints/agilerl-tiny-qwen3-moe) from tp=2,ep=2 to tp=1,ep=4 on 4
# collocated ranks, checking every destination byte. Extra arguments go to
# `build/refit run`.
source "$(dirname "$0")/common.sh"
install_missing
build
exec "$ROOT/build/refit" run "$@"
