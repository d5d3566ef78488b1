#!/usr/bin/env bash
# Bootstrap the machine (scripts/bootstrap.sh), then run the whole test suite against real
# Docker. Extra arguments go to pytest, e.g. `scripts/test.sh -k image -x`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh

status=0
.venv/bin/python -m pytest -ra tests "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "scripts/test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$status"
