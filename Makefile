.PHONY: style quality test bench test-vllm bench-vllm

check_dirs := src tests tests_vllm tests_lmms benchmarks examples

style:
	ruff format $(check_dirs)
	ruff check --fix $(check_dirs)

quality:
	ruff check $(check_dirs)
	ruff format --check $(check_dirs)

test:
	python -m pytest -q tests

# real_shapes.py (a 3B-shape model, ~16 GB RAM, minutes), gpu_check.py (needs a GPU) and vllm_rollouts.py (bench-vllm) run on their own: see
# benchmarks/README.md.
bench:
	@for f in benchmarks/*.py; do \
		case $$f in */real_shapes.py|*/gpu_check.py|*/vllm_rollouts.py) continue;; esac; \
		echo "== $$f"; python $$f || exit 1; \
	done

# The vLLM backend: its own environment (.ci/vllm-venv.sh), reference decoding in this one.
test-vllm:
	THINKER4D_REFERENCE_PYTHON=$$(command -v python) bash .ci/vllm.sh

bench-vllm:
	bash .ci/vllm-venv.sh && python benchmarks/vllm_rollouts.py
