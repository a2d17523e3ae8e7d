.PHONY: style quality test bench

check_dirs := src tests benchmarks examples

style:
	ruff format $(check_dirs)
	ruff check --fix $(check_dirs)

quality:
	ruff check $(check_dirs)
	ruff format --check $(check_dirs)

test:
	python -m pytest -q tests

bench:
	@for f in benchmarks/*.py; do echo "== $$f"; python $$f || exit 1; done
