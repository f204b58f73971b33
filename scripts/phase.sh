# Quiet phases for the set-up scripts (sourced by deps.sh, build.sh, test.sh, sanitize.sh):
# each phase shows one line on stderr ("build ... done (42 s)") and keeps its whole output in
# <build dir>/logs/<phase>.log. Progress (a build's [n/m] or [ n%], CTest's n/m) is one updating
# line when stderr is a terminal, and otherwise a line per 10% (so CI logs stay short). A failing
# phase prints its log's last 40 lines and the log's path, and returns the command's status.
# FATHOM_VERBOSE=1 streams every line as well, as the scripts did before.

_phase_dir=${FATHOM_BUILD_DIR:-build}
[[ $_phase_dir == /* ]] || _phase_dir=$(pwd)/$_phase_dir
PHASE_LOG_DIR=${PHASE_LOG_DIR:-$_phase_dir/logs}
PHASE_TAIL=40

phase_say() { printf '%s\n' "$*" >&2; }

_phase_tty() { [ -t 2 ] && [ "${TERM:-dumb}" != dumb ]; }

# Reads a phase's output on stdin and shows its progress. $1: the phase's label; $2: the kind of
# progress to look for (build, test or none).
_phase_progress() {
  local label=$1 kind=$2 line n=0 m=0 pct next=10 what cols keep
  cols=$(tput cols 2>/dev/null || echo 100)
  while IFS= read -r line || [ -n "$line" ]; do
    [ "${FATHOM_VERBOSE:-0}" = 1 ] && printf '%s\n' "$line" >&2
    what="" keep=0
    case $kind in
      build)
        # Make prints "[ 45%] Building ...", Ninja "[123/456] Building ...".
        if [[ $line =~ ^\[\ *([0-9]+)%\]\ (.*) ]]; then
          pct=${BASH_REMATCH[1]} what="[${pct}%] ${BASH_REMATCH[2]}"
        elif [[ $line =~ ^\[([0-9]+)/([0-9]+)\]\ (.*) ]]; then
          n=${BASH_REMATCH[1]} m=${BASH_REMATCH[2]} pct=$((100 * n / m)) what="[$n/$m] ${BASH_REMATCH[3]}"
        fi ;;
      test)
        # " 12/80 Test #12: core_tests .......   Passed    1.20 sec"
        if [[ $line =~ ^\ *([0-9]+)/([0-9]+)\ Test\ +#[0-9]+:\ ([^ ]+)\ \.*\ *(\*\*\*)?([^ ]+) ]]; then
          n=${BASH_REMATCH[1]} m=${BASH_REMATCH[2]} pct=$((100 * n / m))
          what="[$n/$m] ${BASH_REMATCH[3]} ${BASH_REMATCH[5]}"
          # A failed test gets a line of its own at once, terminal or not.
          [[ ${BASH_REMATCH[5]} == Passed || ${BASH_REMATCH[5]} == Skipped ]] || keep=1
        fi ;;
    esac
    [ -n "$what" ] || continue
    [ "${FATHOM_VERBOSE:-0}" = 1 ] && continue
    if _phase_tty; then
      what="$label $what"
      if ((keep)); then printf '\r\033[K%s\n' "$what" >&2
      else printf '\r\033[K%s' "${what:0:$((cols - 1))}" >&2; fi
    elif ((keep)) || [ "$pct" -ge "$next" ]; then
      phase_say "$label: $what"
      while [ "$next" -le "$pct" ]; do next=$((next + 10)); done
    fi
  done
  if _phase_tty && [ "${FATHOM_VERBOSE:-0}" != 1 ]; then printf '\r\033[K' >&2; fi
}

# phase_run NAME LABEL KIND COMMAND...: runs COMMAND with stdout and stderr in
# $PHASE_LOG_DIR/NAME.log. The summary line is "LABEL ... done (N s)" plus what a configure
# step said about Fathom's options; on failure the log's tail. Returns COMMAND's exit status.
phase_run() {
  local name=$1 label=$2 kind=$3
  shift 3
  mkdir -p "$PHASE_LOG_DIR"
  local log=$PHASE_LOG_DIR/$name.log t0=$SECONDS status had_e=0
  [[ $- == *e* ]] && had_e=1
  if _phase_tty; then printf '%s ...' "$label" >&2; else phase_say "$label ..."; fi
  if _phase_tty && [ "${FATHOM_VERBOSE:-0}" = 1 ]; then phase_say ""; fi
  set +e
  "$@" 2>&1 | tee "$log" | _phase_progress "$label" "$kind"
  status=${PIPESTATUS[0]}
  local took=$((SECONDS - t0)) note
  # What configure decided about Fathom (CUDA, sanitizers), appended to the summary line.
  note=$(sed -n 's/^-- Fathom: //p' "$log" | grep -v '^BLAS' | paste -sd ';' - | sed 's/;/; /g')
  [ -z "$note" ] || note=": $note"
  if [ "$status" -eq 0 ]; then
    phase_say "$label ... done ($took s)$note"
  elif [ "${PHASE_ON_FAIL:-tail}" != tail ]; then
    phase_say "$label ... FAILED (exit status $status after $took s)"
  else
    phase_say "$label ... FAILED (exit status $status after $took s); the last $PHASE_TAIL lines of $log:"
    tail -n "$PHASE_TAIL" "$log" | sed 's/^/  | /' >&2
    phase_say "$label: FAILED; the whole output is in $log"
  fi
  ((had_e)) && set -e
  return "$status"
}

# phase_ctest NAME LABEL CTEST-ARGS...: runs ctest in the current directory as a phase, then
# prints (on stdout) each failed test's output and CTest's closing summary: the pass count, the
# tests that did not run (Skipped) and those that failed. Returns ctest's exit status.
phase_ctest() {
  local name=$1 label=$2 status=0
  shift 2
  PHASE_ON_FAIL=summary phase_run "$name" "$label" test ctest --output-on-failure "$@" || status=$?
  local log=$PHASE_LOG_DIR/$name.log
  # With --output-on-failure a failed test's output follows its result line, up to the next
  # "Start" line: print each such block, its head and tail when it is long.
  awk -v logf="$log" '
    function flush() {
      if (!nb) return
      if (nb <= 90) { for (i = 1; i <= nb; i++) print b[i] }
      else {
        for (i = 1; i <= 30; i++) print b[i]
        print "  ... (" nb - 90 " more lines: the whole output is in " logf ")"
        for (i = nb - 59; i <= nb; i++) print b[i]
      }
      nb = 0
    }
    /^ *[0-9]+\/[0-9]+ Test +#[0-9]+: / {
      flush(); inb = ($0 ~ /\*\*\*/ && $0 !~ /\*\*\*(Skipped|Not Run \(Disabled\))/)
      if (inb) { print ""; print "---- " $0 } ; next
    }
    /^ +Start +[0-9]+: / || /^[0-9]+% tests passed/ { flush(); inb = 0; next }
    inb { b[++nb] = $0 }
    END { flush() }' "$log"
  # CTest's closing lines, without the per-label timing table (it is in the log).
  if grep -qE '^[0-9]+% tests passed' "$log"; then
    echo
    sed -n '/^[0-9]*% tests passed/,$p' "$log" |
      awk '/^Label Time Summary:/ { skip = 1; next } skip && /^$/ { skip = 0; next } !skip'
    echo "(the whole test output is in $log)"
  elif [ "$status" -ne 0 ]; then
    echo "ctest ended without a summary (exit status $status); the last $PHASE_TAIL lines of $log:"
    tail -n "$PHASE_TAIL" "$log"
  fi
  return "$status"
}
