#!/usr/bin/env bash
# Runs every fuzz target in the module for a bounded time each, prints each
# one's executions, and fails a target that ran fewer than the floor: a
# target that slow is not fuzzing.
#
# Usage: scripts/fuzz.sh [duration] [target regexp]   (default 30s, every target)
#   FUZZ_MIN_EXECS  the floor, executions per run (default 1000)
#   FUZZ_FRESH=1    start every target from an empty fuzz cache, as CI does
#   FUZZ_SUMMARY    a file to write the summary to as well (make test prints it last)
#   FUZZ_LONG       targets (a regexp) given twice the duration (default
#                   FuzzHandshakeResponder: each of its inputs is a real
#                   libp2p stream to a handshake responder, with signature
#                   checks, all under coverage instrumentation, about 3 ms
#                   an input on this project's 2-core machine, so 5 s gave
#                   900 to 1,800 executions)
#
# Each new input the fuzzer finds is minimized before fuzzing goes on, and
# minimizing runs the target many times without counting them. Go's
# default budget, 60 s an input, let a short run from an empty cache spend
# all of it minimizing the first inputs found: FuzzSplit ran 8 executions
# in 5 s, minimizing a ~300-byte signed receipt byte by byte. So each
# minimization here stops after FUZZ_MINIMIZE (default 100x: 100 runs);
# a failing input is still written, perhaps less small.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-30s}
only=${2:-.}
floor=${FUZZ_MIN_EXECS:-1000}
long=${FUZZ_LONG:-^FuzzHandshakeResponder\$}
minimize=${FUZZ_MINIMIZE:-100x}
logs=$(mktemp -d -t cocoon-fuzz.XXXXXX)
trap 'rm -rf "$logs"' EXIT

# fuzz runs one target; its output goes to $logs/out.
fuzz() { # pkg target
  local cache=()
  if [ "${FUZZ_FRESH:-}" = 1 ]; then
    rm -rf "$logs/cache" && mkdir "$logs/cache"
    cache=(-args -test.fuzzcachedir="$logs/cache") # the last one given wins
  fi
  go test -run='^$' -fuzz="^$2\$" -fuzztime="$(duration "$2")" -fuzzminimizetime="$minimize" "$1" "${cache[@]}" >"$logs/out" 2>&1
}

# duration is how long target runs: the duration, or twice it for the
# targets FUZZ_LONG names (when the duration is in seconds, "30s").
duration() { # target
  if [[ $1 =~ $long && $time =~ ^([0-9]+)s$ ]]; then
    echo "$((2 * BASH_REMATCH[1]))s"
  else
    echo "$time"
  fi
}

# run runs one target and stops the script on a failure. Go's fuzz
# coordinator (internal/fuzz CoordinateFuzzing) can report its own timeout
# as a failure, "context deadline exceeded" with no failing input: it wakes
# on the timed-out context's Done before the context's child is cancelled,
# and then does not recognise the error as its cancellation. That run
# fuzzed its whole time and found nothing; a loaded machine makes the race
# likelier (make test lost it twice in a row on FuzzDecodeSealedRequest). A
# real failure writes its input under testdata/fuzz, and fails here.
run() { # pkg target
  fuzz "$1" "$2" && return 0
  if grep -q 'context deadline exceeded' "$logs/out" && ! grep -q 'Failing input written' "$logs/out"; then
    echo "fuzz: $2: the fuzzer ran out of time at the end (no failing input); counted as a run"
    return 0
  fi
  cat "$logs/out"
  exit 1
}

# count prints the fuzzer's last progress line, "fuzz: elapsed: 5s,
# execs: 12345 (2469/sec), ...", to stderr and its executions to stdout.
count() {
  local line execs
  line=$(grep 'fuzz: elapsed' "$logs/out" | tail -n 1)
  echo "$line" >&2
  execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<<"$line")
  echo "${execs:-0}"
}

found=0
failed=()
: >"$logs/summary"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  built=
  for target in $(grep -ho '^func \(Fuzz[A-Za-z0-9_]*\)' "$dir"/*_test.go 2>/dev/null | awk '{print $2}' | sort -u | grep -E -- "$only" || true); do
    found=$((found + 1))
    short=${pkg#github.com/cocoon-mesh/cocoon/}
    if [ -z "$built" ]; then
      echo "fuzz: $short: building with coverage instrumentation (the first time up to a minute or two; then cached)"
      built=1
    fi
    echo "fuzz: $short $target ($(duration "$target"))"
    run "$pkg" "$target"
    execs=$(count)
    if [ "$execs" -lt "$floor" ]; then
      # A busy machine can starve one run; a slow target is slow twice.
      echo "fuzz: $target: $execs executions, under $floor; running it again"
      run "$pkg" "$target"
      execs=$(count)
    fi
    mark=
    if [ "$execs" -lt "$floor" ]; then
      mark="  << under $floor"
      failed+=("$short $target")
    fi
    printf '%12s  %s %s%s\n' "$execs" "$short" "$target" "$mark" >>"$logs/summary"
  done
done
{
  echo "fuzz: $found targets, $time each; executions (floor $floor):"
  cat "$logs/summary"
} | tee ${FUZZ_SUMMARY:+"$FUZZ_SUMMARY"}
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) ran fewer than $floor executions in $time: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: $found targets passed"
