#!/usr/bin/env bash
# The Python environment the integration tests and tools/qosbench use (.venv, git-ignored), from
# PyPI: pytest, the official openai client and httpx (integration tests); aiohttp (qosbench's
# streaming load over HTTPS), matplotlib (its PNGs) and selenium (driving Debian's chromium in the
# dashboard test; `tools/bootstrap.sh browser` installs the browser). Idempotent: nothing is
# downloaded when they are present.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import openai, pytest, httpx, aiohttp, matplotlib, selenium" >/dev/null 2>&1; then
  .venv/bin/pip install --quiet --disable-pip-version-check "openai>=1.40" "pytest>=7" "httpx>=0.25" \
    "aiohttp>=3.9" "matplotlib>=3.7" "selenium>=4.15"
fi
