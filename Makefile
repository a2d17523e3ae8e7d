.PHONY: style quality test bench test-vllm bench-vllm

check_dirs := src tests tests_vllm benchmarks examples

style:
	ruff format $(check_dirs)
	ruff check --fix $(check_dirs)

quality:
	ruff check $(check_dirs)
	ruff format --check $(check_dirs)

test:
	python -m pytest -q tests

bench:
	@for f in benchmarks/*.py; do [ "$$f" = benchmarks/vllm_rollouts.py ] && continue; echo "== $$f"; python $$f || exit 1; done

# The vLLM backend: its own environment (.ci/vllm-venv.sh), reference decoding in this one.
test-vllm:
	THINKER4D_REFERENCE_PYTHON=$$(command -v python) bash .ci/vllm.sh

bench-vllm:
	bash .ci/vllm-venv.sh && python benchmarks/vllm_rollouts.py
