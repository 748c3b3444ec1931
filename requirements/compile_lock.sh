#!/usr/bin/env bash
# Rewrites requirements/lock-cpu.txt: every dependency of laser (with the dev extra) pinned, with hashes, to
# the versions installed in the environment that measured the README's and docs/' tables (run this from
# that environment, with laser installed in it). uv resolves (a well-kept resolver; pip-tools' pip-compile
# does the same, slower); the result installs with plain pip:
#   pip install -r requirements/lock-cpu.txt && pip install --no-deps -e .
set -euo pipefail
cd "$(dirname "$0")/.."
frozen=$(mktemp)
trap 'rm -f "$frozen"' EXIT
pip freeze --exclude-editable > "$frozen"   # the measured environment's exact versions, as constraints
uv pip compile pyproject.toml --extra dev --constraint "$frozen" --generate-hashes --no-annotate \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command "requirements/compile_lock.sh" -o requirements/lock-cpu.txt
