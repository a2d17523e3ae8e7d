#!/usr/bin/env bash
# Create (or reuse) the separate virtual environment for the lmms-eval integration tests (tests_lmms/).
# lmms-eval pins av<16 and brings ~200 packages of its own (wandb, sentence-transformers, opencv, ...), so it does
# not go into the project's test environment; thinker4d itself installs with its dependencies and the extra.
# Usage: .ci/lmms-venv.sh [VENV_DIR]   (default: .ci/venv-lmms, reused when its stamp matches)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.ci/venv-lmms}"
SPEC="lmms-eval==0.7.3 torch==2.14.1 torchvision==0.29.1"
STAMP="$VENV/.thinker4d-lmms-stamp"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SPEC" ]; then
    echo ".ci/lmms-venv.sh: reusing $VENV ($SPEC)"
    "$VENV/bin/pip" install -q --no-deps -e .  # the entry point and package data of this checkout
    exit 0
fi
rm -rf "$VENV"
# Start from the README's environment when there is one (hard links: torch is not stored twice), else from scratch.
bash .ci/clone-venv.sh "${THINKER4D_CI_BASE_VENV:-.venv}" "$VENV" || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
"$VENV/bin/pip" install -q "lmms-eval==0.7.3" -e ".[lmms-eval,test]"
echo "$SPEC" > "$STAMP"
echo ".ci/lmms-venv.sh: created $VENV"
