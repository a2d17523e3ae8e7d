#!/usr/bin/env bash
# One GPU check of thinker4d at Qwen2.5-VL-3B's real shapes, from a fresh clone on one GPU (planned for one H100,
# under 8 minutes). Prints one JSON object on stdout (benchmarks/gpu_check.py says what each section measures);
# install logs go to stderr.
#
#   bash benchmarks/gpu_check.sh             # the check, on the GPU
#   bash benchmarks/gpu_check.sh --dry-run   # tiny widths on the CPU: checks that the code runs (numbers mean nothing)
#
# It uses $PYTHON (default: python3) and installs only what that interpreter lacks: the package's dependencies
# (`pip install -e .[peft]`; skipped when they import already, then src/ is put on PYTHONPATH instead) and flash-attn from a
# prebuilt wheel only (`--only-binary`; building it from source takes longer than the whole check). Without a
# flash-attn wheel the flash_vs_sdpa section says it was skipped and the other sections still run.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1

if ! "$PYTHON" -c "import torch, transformers, trl, peft, accelerate, datasets, PIL" 2>/dev/null; then
    echo "gpu_check: installing the package's dependencies" >&2
    "$PYTHON" -m pip install -q -e ".[peft]" >&2 || {
        echo '{"error": "pip install -e .[peft] failed; see stderr"}'
        exit 1
    }
fi
if [[ "${1:-}" != "--dry-run" ]] && ! "$PYTHON" -c "import flash_attn" 2>/dev/null; then
    echo "gpu_check: trying a prebuilt flash-attn wheel" >&2
    "$PYTHON" -m pip install -q --only-binary=:all: flash-attn >&2 || echo "gpu_check: no flash-attn wheel" >&2
fi
# 8 minutes on the GPU; the CPU dry run is slower than the real check and gets 30 minutes
limit=480
[[ "${1:-}" == "--dry-run" ]] && limit=1800
exec timeout "$limit" "$PYTHON" benchmarks/gpu_check.py "$@"
