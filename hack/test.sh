#!/usr/bin/env bash
# `make test`: the unit tier and the integration tier at once (the unit tests are CPU-bound and short,
# the integration tests mostly wait on a real API server), then both reports, unit last. Fails when
# either tier fails. Arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
log=$(mktemp "${TMPDIR:-/tmp}/joch-unit-tests.XXXXXX")
trap 'rm -f "$log"' EXIT
"$py" -m pytest -p no:cacheprovider tests/unit "$@" >"$log" 2>&1 &
unit=$!
"$py" -m pytest tests/integration "$@"
integration=$?
wait "$unit"
unit_status=$?
echo
echo "===== unit tests (ran alongside the integration tests) ====="
cat "$log"
if [ "$integration" -ne 0 ] || [ "$unit_status" -ne 0 ]; then
  echo "make test: integration exit $integration, unit exit $unit_status" >&2
  exit 1
fi
