#!/usr/bin/env bash
# A short run of an example as a user starts it: it must exit 0, print a line matching every
# --expect pattern, and no line matching any --reject pattern (grep -E, one line each).
# Usage: smoke.sh [--expect REGEX]... [--reject REGEX]... -- COMMAND [ARGS...]
set -uo pipefail
expects=() rejects=()
while [ $# -gt 0 ]; do
  case $1 in
    --expect) expects+=("$2"); shift 2 ;;
    --reject) rejects+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "smoke.sh: unknown argument '$1' (expected --expect, --reject or --)"; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "smoke.sh: no command after --"; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
echo "smoke: $*"
"$@" > "$out" 2>&1
rc=$?
cat "$out"
failures=0
if [ "$rc" -ne 0 ]; then
  echo "FAIL: exit status $rc, want 0"
  failures=$((failures + 1))
fi
for re in "${expects[@]}"; do
  grep -Eq -- "$re" "$out" || { echo "FAIL: no line matches '$re'"; failures=$((failures + 1)); }
done
for re in "${rejects[@]}"; do
  if grep -Eq -- "$re" "$out"; then
    echo "FAIL: a line matches '$re': $(grep -Em1 -- "$re" "$out")"
    failures=$((failures + 1))
  fi
done
[ "$failures" -eq 0 ] || exit 1
echo "PASS: exit 0, ${#expects[@]} expected line(s) found, ${#rejects[@]} unwanted pattern(s) absent"
