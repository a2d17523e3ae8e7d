"""`python -m thinker4d.lmms`: prints the folder of the thinker4d task YAMLs, for lmms-eval's `--include_path`."""

from . import TASKS_DIR


if __name__ == "__main__":
    print(TASKS_DIR)
