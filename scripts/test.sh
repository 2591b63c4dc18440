#!/usr/bin/env bash
# make test's Go suites and fuzz run, ending with one summary a person
# reads at a glance: packages, tests passed, failed and skipped (each skip
# with its reason), and every fuzz target's executions.
#
# GOTESTSUM is the gotestsum binary (make tools installs it into
# bin/tools); COCOON_OLLAMA, the real engine, reaches the tests as is.
# TEST_PKGS narrows the main run (default ./...), FUZZ_TARGETS the fuzz
# run (a regexp of target names; default every one).
set -uo pipefail
cd "$(dirname "$0")/.."
gotestsum=${GOTESTSUM:-bin/tools/gotestsum}
if ! [ -x "$gotestsum" ]; then
  echo "test: no gotestsum at $gotestsum: run make tools (or make test, which does)" >&2
  exit 2
fi
out=$(mktemp -d -t cocoon-test.XXXXXX)
trap 'rm -rf "$out"' EXIT
rc=0

# suite runs go test with the arguments given, one line a package and the
# output of each failure as it comes; the skips wait for the summary.
suite() { # name, what it is, go test arguments...
  local name=$1 what=$2
  shift 2
  echo "== $what"
  "$gotestsum" --format pkgname-and-test-fails --hide-summary skipped --jsonfile "$out/$name.json" -- "$@" || rc=1
}
suite main "race-enabled unit, integration and real-engine tests" -race -count=1 -timeout 20m ${TEST_PKGS:-./...}
suite streams "1,000 streams, a 5,000-request money soak and 1,000 watched channels: past the race detector's limits, so without it" \
  -count=1 -run 'TestThousandStreams|TestMoneySoak|TestOldStateChallengedAmongThousand' ./testnet/ ./payments/channels/
suite testroot "synthetic TDX quotes under a test root: only in this build" \
  -race -count=1 -tags cocoon_testroot -run 'TestTrustTestRoot|TestRelayVerifiesTDXWorker|TestSealedThroughTDXWorker|TestTDXIdentityInMemory|TestMeasurementRemovedDropsPeers|TestMinTCBRaisedDropsPeers' ./attest/... ./testnet/
echo "== a short fuzz of every target"
FUZZ_SUMMARY="$out/fuzz.txt" ./scripts/fuzz.sh 5s "${FUZZ_TARGETS:-.}" || rc=1

echo
echo "================ summary ================"
# A package's own result is the event with a Package and no Test.
pkgs() { cat "$out"/*.json | sed -n "s/.*\"Action\":\"$1\",\"Package\":\"\([^\"]*\)\",\"Elapsed\".*/\1/p" | sort -u | wc -l; }
echo "packages: $(pkgs pass) passed, $(pkgs fail) failed, $(pkgs skip) without tests"
# A test's (or subtest's) result is an event with a Test.
tests() { cat "$out"/*.json | grep -c "\"Action\":\"$1\",\"Package\":\"[^\"]*\",\"Test\":" || true; }
echo "tests: $(tests pass) passed, $(tests fail) failed, $(tests skip) skipped (subtests included; each skip and failure below)"
# gotestsum replays the three runs: every skipped test with its reason,
# every failure, and the counts.
"$gotestsum" --format none --raw-command -- cat "$out"/*.json || true
if [ -s "$out/fuzz.txt" ]; then
  echo
  cat "$out/fuzz.txt"
else
  echo "fuzz: did not finish (see its output above)"
fi
if [ "$rc" -ne 0 ]; then
  echo "make test: FAILED"
else
  echo "make test: passed"
fi
exit "$rc"
