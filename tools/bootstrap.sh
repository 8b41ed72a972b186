#!/usr/bin/env bash
# Installs what tiergate builds and tests with, from Debian packages. Idempotent: a machine that has
# everything is left alone (no apt-get update, no network).
#   bash tools/bootstrap.sh            build dependencies
#   bash tools/bootstrap.sh browser    headless chromium and its chromedriver, for the dashboard's
#                                      browser test (Selenium drives them; no driver is downloaded)
set -euo pipefail

case "${1:-build}" in
  build)
    what="build dependencies"
    packages=(
      cmake ninja-build ccache g++ pkg-config
      libboost1.81-dev libboost-json1.81-dev libsimdjson-dev libspdlog-dev libssl-dev
      librapidcheck-dev libgtest-dev
      prometheus  # promtool, which checks /metrics' exposition in the integration tests
      clang-16 libclang-rt-16-dev  # sanitizer and libFuzzer builds (clang 14 lacks C++20 binding captures)
      # The AArch64 build of the kernel and engine tests, run under qemu-user (tools/aarch64_tests.sh).
      g++-aarch64-linux-gnu qemu-user libgtest-dev:arm64 librapidcheck-dev:arm64
      libsimdjson14:arm64  # the arm64 runtime only: libsimdjson-dev is not co-installable across architectures
      libhiredis-dev redis-server nginx-light openssl  # fleet: Redis client, the shared state, the test load balancer, the TLS tests' certificates
    )
    ;;
  browser)
    what="chromium and chromedriver"
    packages=(chromium chromium-driver)
    ;;
  *)
    echo "usage: bash tools/bootstrap.sh [build|browser]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  # Debian multiarch: the arm64 libraries install beside the native ones.
  dpkg --print-foreign-architectures | grep -qx arm64 || "${sudo_cmd[@]}" dpkg --add-architecture arm64
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
echo "bootstrap: $what present"
