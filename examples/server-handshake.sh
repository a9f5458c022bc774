#!/usr/bin/env bash
# Two sessions coordinate a server start through a cipc broker.
#
#   terminal 1 ("backend"): registers, says it is ready, waits for an order,
#                           starts the server, logs it, acks with the port.
#   terminal 2 ("client"):  waits until the backend is ready, then orders the
#                           start and gets the result in one line of shell.
#
# Here both run from one script (the backend in the background). Try it:
#   cipc serve --memory &
#   ./examples/server-handshake.sh
# Needs cipc on PATH and jq. Set CIPC_URL (and CIPC_TOKEN) for another broker.
set -euo pipefail
export CIPC_URL="${CIPC_URL:-http://127.0.0.1:9100}"

backend() {
  # Register and remember who we are: later calls send X-Cipc-Peer.
  eval "$(cipc peers connect backend --cap server --export)"
  # Tell the client we are ready, and which peer to order.
  cipc signal emit backend-ready --data "{\"peer\": \"$CIPC_PEER\"}" >/dev/null

  # Take orders until the start one; stdout is a pipe, so each is JSON.
  while order=$(cipc wait --timeout 60s); do
    id=$(jq -r .command.id <<<"$order")
    case "$(jq -r .command.action <<<"$order")" in
      start-server)
        port=$(jq -r '.command.params.port // 8080' <<<"$order")
        # ... start the real server here ...
        cipc chan send deploy "{\"event\": \"listening\", \"port\": $port}" >/dev/null
        cipc ack "$id" --result "{\"started\": true, \"port\": $port}" >/dev/null
        break ;;
      *)
        cipc ack "$id" --error "backend does not know this action" >/dev/null ;;
    esac
  done
  cipc peers disconnect >/dev/null
}

client() {
  ready=$(cipc signal wait backend-ready --timeout 60s)
  backend_peer=$(jq -r .signal.data.peer <<<"$ready")
  # Request and reply in one line; stdout is the result alone ({"port": 8080});
  # exits 1 if the backend reports a failure.
  # (Sending to the role "backend" works too: the first backend to wait takes it.)
  reply=$(cipc send "$backend_peer" start-server --param port:=8080 --wait --timeout 60s)
  echo "server started on port $(jq -r .port <<<"$reply")"
  echo "deploy log: $(cipc chan read deploy | jq -c '.messages[-1].data')"
}

cipc signal clear backend-ready >/dev/null   # a fresh start on a shared broker
backend &
backend_pid=$!
client
wait "$backend_pid"
