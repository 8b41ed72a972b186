#!/usr/bin/env bash
# ctest entry for one libFuzzer target: a bounded run on a scratch copy of the committed seeds
# (libFuzzer writes what it finds into its first corpus directory; the repository's stays as is).
#   run_fuzzer.sh TARGET SEED_DIR RUNS [DICT_DIR [LIBFUZZER_FLAG ...]]
# The target's own flags come after the defaults, so they win (libFuzzer takes the last one).
set -euo pipefail
target="$1" seeds="$2" runs="$3" dicts="${4:-}"
shift $(($# < 4 ? $# : 4))
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tg-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
name=$(basename "$target")
args=(-runs="$runs" -max_len=65536 -timeout=60 -rss_limit_mb=4096 -print_final_stats=1
      -artifact_prefix="$scratch/crash-")
[ -n "$dicts" ] && [ -f "$dicts/${name%_fuzz}.dict" ] && args+=(-dict="$dicts/${name%_fuzz}.dict")
args+=("$@")
status=0
"$target" "${args[@]}" "$scratch" "$seeds" || status=$?
for crash in "$scratch"/crash-*; do
  [ -e "$crash" ] || continue
  echo "run_fuzzer: $name found an input that fails: save it under $seeds/ as a regression case:" >&2
  od -c "$crash" | head -20 >&2
done
exit "$status"
