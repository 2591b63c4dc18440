#!/usr/bin/env bash
# make run: start a local network, send one streaming chat request through
# it, show the answer, then follow the network's log (payments as they
# land, warnings, errors) until Ctrl-C, which shows the final totals.
#
# COCOON_API_ADDR moves the client's API (default 127.0.0.1:10000);
# COCOON_BIN_DIR is where cocoon and chat are (default ./bin, as make
# build puts them). The testnet's data and log go under TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
addr=${COCOON_API_ADDR:-127.0.0.1:10000}
bin=${COCOON_BIN_DIR:-./bin}
log=$(mktemp -t cocoon-testnet.XXXXXX)
"$bin/cocoon" testnet --api-addr "$addr" >"$log" 2>&1 &
pid=$!
shown=0  # lines of the log already on the terminal
follow=  # the tail that shows the rest as it comes

# stop ends the testnet and shows what it printed last. Ctrl-C reaches the
# testnet too (it prints the final totals and shuts down); TERM covers a
# kill of this script alone. The follower, started in the background,
# ignores Ctrl-C and ends when the testnet does, after its last lines.
stop() {
  trap - INT TERM EXIT
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -n "$follow" ]; then
    wait "$follow" 2>/dev/null || true
  else
    tail -n +"$((shown + 1))" "$log"
  fi
  rm -f "$log"
}
trap stop EXIT
trap 'echo; echo "make run: stopping"; stop; echo "make run: stopped"; exit 0' INT TERM

echo "make run: starting a local network: sandbox chain, root contract, proxy, workers, client"
# The testnet's last start-up line is "press Ctrl-C"; the lines after it
# are what the network does.
for _ in $(seq 1 1800); do
  if grep -q '^testnet: press Ctrl-C' "$log"; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    cat "$log"; shown=$(wc -l <"$log")
    echo "make run: the testnet exited before it was ready" >&2; exit 1
  fi
  sleep 0.1
done
if ! grep -q '^testnet: press Ctrl-C' "$log"; then
  cat "$log"; shown=$(wc -l <"$log")
  echo "make run: the testnet was not ready within 180 s" >&2; exit 1
fi
shown=$(grep -n '^testnet: press Ctrl-C' "$log" | head -n 1 | cut -d: -f1)
head -n "$shown" "$log" | grep -v -e '^testnet: try' -e '^testnet: press Ctrl-C' || true
echo
echo "== one streaming chat request through client -> proxy -> worker =="
"$bin/chat" --base-url "http://$addr/v1" --model sim-small "Hello, Cocoon mesh"
echo
echo "== the API stays up on http://$addr/v1. Try: =="
echo "curl -N http://$addr/v1/chat/completions -H 'Content-Type: application/json' \\"
echo "  -d '{\"model\":\"sim-small\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'"
echo "curl http://$addr/v1/models"
echo
echo "== the network's log follows: payments as they land (the client pays the proxy, the proxy the"
echo "   worker), warnings, errors. Ctrl-C shows the final totals and stops. =="
tail -n +"$((shown + 1))" -f --pid="$pid" "$log" &
follow=$!
wait "$pid" || true
wait "$follow" || true
