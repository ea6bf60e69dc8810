#!/usr/bin/env bash
# `make test`: the unit tier and the integration tier at once (the unit tests are CPU-bound and short,
# the integration tests mostly wait on a real API server, in two workers), then both reports, unit last. Fails when
# either tier fails. Arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
log=$(mktemp "${TMPDIR:-/tmp}/joch-unit-tests.XXXXXX")
trap 'rm -f "$log"' EXIT
"$py" -m pytest -p no:cacheprovider tests/unit "$@" >"$log" 2>&1 &
unit=$!
# Two workers (JOCH_IT_WORKERS), each with its own control plane, take whole files in turn (loadfile):
# most of an integration test is waiting on the API server, so two overlap well even on two cores.
"$py" -m pytest -n "${JOCH_IT_WORKERS:-2}" --dist loadfile tests/integration "$@"
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
