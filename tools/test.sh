#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what is missing, builds, runs ctest.
#   bash tools/test.sh            release build: every test
#   bash tools/test.sh ci         what CI runs (.ci/run): the sanitizer jobs below, then release
#   bash tools/test.sh sanitize   clang ASan + UBSan, and each libFuzzer target for a bounded number
#                                 of iterations; the tests a model-heavy run would take tens of
#                                 minutes for are left out (CMakePresets.json lists them)
#   bash tools/test.sh tsan       clang ThreadSanitizer: the threaded gateway and engine-service tests,
#                                 and the hardening integration tests against the real server
#   bash tools/test.sh debug      GCC AddressSanitizer + UndefinedBehaviorSanitizer, every test
# Extra arguments go to ctest (e.g. -R Admission, -L gpu). A sanitizer report fails its test
# (-fno-sanitize-recover; LeakSanitizer and TSan make the process exit non-zero).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="release"
case "${1:-}" in
  release | debug | sanitize | tsan | ci) preset="$1"; shift ;;
esac

if [ "$preset" = ci ]; then
  # Each job's summary is printed again at the end, release's last (CI reads the log's tail).
  status=0
  summaries=()
  for job in sanitize tsan release; do
    start=$SECONDS
    bash "$0" "$job" "$@" || status=1
    summaries+=("tiergate: $job job: $(tail -1 "build/$job/summary.txt" 2>/dev/null || echo 'no summary'); $((SECONDS - start)) s")
  done
  printf '%s\n' "${summaries[@]}"
  exit "$status"
fi

# Sanitizer jobs build only what they run: the libraries, these test binaries and the server.
targets=()
case "$preset" in
  sanitize) targets=(qos_tests qos_fairness_tests gateway_tests gateway_server_tests engine_tests kernels_tests tiergate
                     qos_config_fuzz api_keys_fuzz request_body_fuzz tokenizer_fuzz gguf_fuzz http_request_fuzz constraint_fuzz) ;;
  tsan) targets=(qos_tests gateway_tests gateway_server_tests kernels_tests tiergate) ;;
esac
bash tools/build.sh "$preset" "${targets[@]}"
bash tools/fetch_model.sh >/dev/null  # the engine tests run the default GGUF
bash tools/python_env.sh              # the integration tests' client: the official openai package
if [ "$preset" = release ] || [ "$preset" = debug ]; then
  bash tools/bootstrap.sh browser    # headless chromium for the dashboard's browser test
fi
export TIERGATE_REQUIRE_MODEL=1       # a missing model (e.g. a wrong TIERGATE_MODEL) fails the run, not skips it
# Every skipped test is counted by reason: `gpu` (labelled gpu: no usable CUDA device), `isa` (a
# CPU level this CPU lacks, as /proc/cpuinfo confirms) or `other`, each of which is named; under
# CI=true an `other` skip fails the job, since it hides a test that should have run (a missing
# redis-server, a level the CPU has but the test thinks it lacks). ctest's summary line is
# repeated last so that it is what a reader of the log's tail (and the ci job) sees.
status=0
junit="$PWD/build/$preset/ctest.junit.xml"
rm -f "$junit"
ctest --preset "$preset" -j"$(nproc)" --output-junit "$junit" "$@" 2>&1 | tee "build/$preset/ctest.log" || status=$?
ctest --preset "$preset" --show-only=json-v1 >"build/$preset/ctest.tests.json" 2>/dev/null || true
skip_status=0
python3 tools/ctest_skips.py "$junit" "build/$preset/ctest.tests.json" "build/$preset/skips.txt" || skip_status=$?
if [ "$skip_status" = 3 ] && [ "${CI:-}" = true ]; then
  echo "tiergate: CI=true: a test skipped for any reason but no GPU or a CPU level this CPU lacks fails the job"
  if [ "$status" = 0 ]; then status=1; fi
elif [ "$skip_status" != 0 ] && [ "$skip_status" != 3 ]; then
  echo "tiergate: counting the skipped tests failed (exit $skip_status)"
  if [ "$status" = 0 ]; then status=1; fi
fi
summary=$(grep -E '[0-9]+% tests passed' "build/$preset/ctest.log" | tail -1 || true)
line="${summary:-ctest printed no summary}; $(cat "build/$preset/skips.txt" 2>/dev/null || echo 'skips not counted')"
echo "$line" >"build/$preset/summary.txt"
echo "tiergate: $line"
exit "$status"
