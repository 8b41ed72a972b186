#!/usr/bin/env bash
# ctest wrapper for a command whose output must show something: passes only when the command exits
# 0 AND its output matches PATTERN (grep -E). ctest's PASS_REGULAR_EXPRESSION alone ignores the
# exit code, so a command that printed the line and then failed would pass.
#   expect_output.sh PATTERN COMMAND [ARGS...]
set -uo pipefail
pattern="${1:?usage: expect_output.sh PATTERN COMMAND [ARGS...]}"
shift
output=$("$@" 2>&1)
status=$?
printf '%s\n' "$output"
if [ "$status" -ne 0 ]; then
  echo "expect_output: '$1' exited with status $status" >&2
  exit 1
fi
if ! grep -Eq -- "$pattern" <<<"$output"; then
  echo "expect_output: the output of '$1' does not match /$pattern/" >&2
  exit 1
fi
