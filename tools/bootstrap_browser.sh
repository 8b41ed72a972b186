#!/usr/bin/env bash
# Installs the headless browser the dashboard's end-to-end test drives: Debian's chromium and its
# chromedriver (Selenium, from PyPI via tools/python_env.sh, talks to that driver; nothing is
# downloaded at test time). Idempotent: a machine that has both is left alone (no network).
set -euo pipefail

packages=(chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap_browser: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
echo "bootstrap_browser: chromium $(chromium --version 2>/dev/null | awk '{print $2}') present"
