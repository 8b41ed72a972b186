#!/usr/bin/env bash
# The Python environment the integration tests use (.venv, git-ignored): pytest and the official
# openai client from PyPI, and PyYAML for the Kubernetes manifests' test. Idempotent: nothing is
# downloaded when they are present.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import openai, pytest, httpx, yaml" >/dev/null 2>&1; then
  .venv/bin/pip install --quiet --disable-pip-version-check "openai>=1.40" "pytest>=7" "httpx>=0.25" "pyyaml>=6"
fi
