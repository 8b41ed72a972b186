#!/usr/bin/env bash
# Installs what tiergate builds and tests with, from Debian packages. Idempotent: a machine that has
# everything is left alone (no apt-get update, no network).
set -euo pipefail

packages=(
  cmake ninja-build ccache g++ pkg-config
  libboost1.81-dev libsimdjson-dev libspdlog-dev libssl-dev
  librapidcheck-dev libgtest-dev
  prometheus  # promtool, which checks /metrics' exposition in the integration tests
  clang-16 libclang-rt-16-dev  # sanitizer and libFuzzer builds (clang 14 lacks C++20 binding captures)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
echo "bootstrap: build dependencies present"
