#!/usr/bin/env bash
# make run: start a local network, send one streaming chat request through
# it, show the answer and its usage, and leave the API up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
addr=${COCOON_API_ADDR:-127.0.0.1:10000}
log=$(mktemp -t cocoon-testnet.XXXXXX)
./bin/cocoon testnet --api-addr "$addr" >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
trap 'echo; echo "make run: stopped"; exit 0' INT TERM
echo "make run: starting a local network: sandbox chain, root contract, proxy, workers, client"
echo "          (the first run installs the sandbox chain's npm packages into ~/.cache/cocoon, about 10 s)"
for _ in $(seq 1 1200); do
  if grep -q 'ready' "$log"; then break; fi
  if ! kill -0 $pid 2>/dev/null; then
    cat "$log"; echo "make run: the testnet exited before it was ready" >&2; exit 1
  fi
  sleep 0.1
done
grep -q 'ready' "$log" || { cat "$log"; echo "make run: no 'ready' within 120 s" >&2; exit 1; }
grep -v '^testnet: try' "$log" | grep -v 'press Ctrl-C'
echo
echo "== one streaming chat request through client -> proxy -> worker =="
./bin/chat --base-url "http://$addr/v1" --model sim-small "Hello, Cocoon mesh"
echo
# The client pays the proxy, the proxy the worker; the testnet prints the
# totals once the signed states land (within a couple of seconds).
for _ in $(seq 1 50); do
  if grep -q '^testnet: payments:' "$log"; then break; fi
  sleep 0.1
done
grep '^testnet: payments:' "$log" | tail -n 1 || true
echo
echo "== the API stays up on http://$addr/v1 (Ctrl-C to stop). Try: =="
echo "curl -N http://$addr/v1/chat/completions -H 'Content-Type: application/json' \\"
echo "  -d '{\"model\":\"sim-small\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'"
echo "curl http://$addr/v1/models"
tail -n +1 -f "$log" --pid=$pid | awk '!/^testnet: / || /^testnet: payments:/ { print; fflush() }' || true
wait $pid
