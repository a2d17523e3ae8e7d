#!/usr/bin/env bash
# Usage: .ci/clone-venv.sh SRC DST
# Make the virtual environment DST a copy of SRC whose files are hard links to SRC's, so the CI's side environments
# (lowest versions, lmms-eval, vLLM GRPO) share torch and the rest of their common packages on disk instead of
# holding several GB each. pip replaces a file when it installs or removes a package, it never writes into one, so
# installing into DST leaves SRC as it was. The scripts and activate files that name SRC's path are rewritten (into
# new files) to name DST's.
# Exits non-zero, leaving no DST, when SRC is not a virtual environment or the copy fails (another file system, say);
# callers then build DST from scratch.
set -euo pipefail
src=${1:?usage: clone-venv.sh SRC DST}
dst=${2:?usage: clone-venv.sh SRC DST}
rm -rf "$dst"
[ -x "$src/bin/python" ] && [ -f "$src/pyvenv.cfg" ] || { echo ".ci/clone-venv.sh: $src is not a virtual environment" >&2; exit 1; }
mkdir -p "$(dirname "$dst")"
if ! cp -al "$src" "$dst"; then
    rm -rf "$dst"
    echo ".ci/clone-venv.sh: cannot hard-link $src to $dst" >&2
    exit 1
fi
src_abs=$(cd "$src" && pwd -P)
dst_abs=$(cd "$dst" && pwd -P)
# The CI scripts' stamps say what an environment was built from; the copy is not that yet, and writing a stamp through
# a shared link would change SRC's.
rm -f "$dst"/.thinker4d-*-stamp
# sed -i writes a new file and renames it over the old name, so SRC's copy (the other link) keeps its text.
grep -rlIZ -F "$src_abs" "$dst/bin" "$dst/pyvenv.cfg" | xargs -0 -r sed -i "s#$src_abs#$dst_abs#g"
prefix=$("$dst/bin/python" -c 'import sys; print(sys.prefix)')
if [ "$(cd "$prefix" && pwd -P)" != "$dst_abs" ]; then
    rm -rf "$dst"
    echo ".ci/clone-venv.sh: the copy's python reports prefix $prefix, not $dst_abs" >&2
    exit 1
fi
echo ".ci/clone-venv.sh: $dst shares its files with $src"
