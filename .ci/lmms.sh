#!/usr/bin/env bash
# CI job of the lmms-eval integration: its own virtual environment (lmms-eval pins av<16), then tests_lmms/, which
# run lmms-eval with the thinker4d model and tasks and compare with `thinker4d eval` in the same environment.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${THINKER4D_LMMS_VENV:-.ci/venv-lmms}"
bash .ci/lmms-venv.sh "$VENV" || { echo ".ci/lmms.sh: could not create $VENV" >&2; exit 1; }
PYTHONPATH="$PWD/src" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests_lmms
rc=$?
if [ "$rc" -eq 5 ]; then
    echo ".ci/lmms.sh: pytest collected no tests (exit 5); that is a failure" >&2
    exit 1
fi
exit "$rc"
