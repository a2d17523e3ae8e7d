#!/usr/bin/env bash
# Lowest-versions job: the model, DIFT and GRPO tests against the lowest supported Hugging Face stack, the versions
# pinned in .ci/constraints-lowest.txt (pyproject.toml's lower bounds). Run it alone with `bash .ci/lowest.sh`.
#
# The venv .ci/venv-lowest is reused while it was built from the same constraints, torch pins, pyproject.toml and
# checkout; otherwise it is rebuilt. Exits non-zero when the install or any test fails, or when no test ran.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=.ci/venv-lowest
CONSTRAINTS=.ci/constraints-lowest.txt
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"  # the README's pins: the lowest job varies the Hugging Face stack only
TESTS=(tests/test_models.py tests/test_generate_contract.py tests/test_dift.py tests/test_grpo.py tests/test_grpo_data.py)
PYTHON=${PYTHON:-python3}
BASE_VENV=${THINKER4D_CI_BASE_VENV:-.venv}  # made by the README's test command in .ci/run

fail() {
    echo ".ci/lowest.sh: $*" >&2
    exit 1
}

# What the venv was built from; a cached venv with another stamp is rebuilt.
stamp=$( { cat "$CONSTRAINTS" pyproject.toml; echo "$TORCH_PINS"; pwd; "$PYTHON" --version; } | sha256sum | cut -d' ' -f1)
stamp_file="$VENV/.thinker4d-lowest-stamp"

start=$SECONDS
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
    echo ".ci/lowest.sh: reusing $VENV"
else
    echo ".ci/lowest.sh: building $VENV"
    rm -rf "$VENV"
    # Start from the README's environment when there is one (hard links: torch is not stored twice), else from scratch.
    bash .ci/clone-venv.sh "$BASE_VENV" "$VENV" || "$PYTHON" -m venv "$VENV" || fail "cannot create $VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q $TORCH_PINS || fail "installing $TORCH_PINS failed"
    "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -e ".[test]" || fail "installing the lowest versions failed"
    echo "$stamp" >"$stamp_file"
fi
# Each pin must be what the venv holds (a cached venv included).
"$VENV/bin/python" - "$CONSTRAINTS" <<'EOF' || fail "$VENV does not hold the versions in $CONSTRAINTS (delete it to rebuild)"
import sys
from importlib.metadata import PackageNotFoundError, version

bad = []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = (s.strip() for s in line.split("=="))
    try:
        have = version(name)
    except PackageNotFoundError:
        have = "not installed"
    print(f"  {name}=={have}")
    if have != want:
        bad.append(f"{name}: wants {want}, has {have}")
if bad:
    sys.exit("\n".join(bad))
EOF
install_s=$((SECONDS - start))

start=$SECONDS
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
rc=$?
test_s=$((SECONDS - start))
echo ".ci/lowest.sh: install ${install_s}s, tests ${test_s}s, pytest exit $rc"
if [ "$rc" -eq 5 ]; then
    fail "pytest collected no tests (exit 5); that is a failure for this project"
fi
exit "$rc"
