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

# real_shapes.py (a 3B-shape model, ~16 GB RAM, minutes) and gpu_check.py (needs a GPU) run on their own: see
# benchmarks/README.md.
bench:
	@for f in benchmarks/*.py; do \
		case $$f in */real_shapes.py|*/gpu_check.py) continue;; esac; \
		echo "== $$f"; python $$f || exit 1; \
	done
