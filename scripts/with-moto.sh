#!/usr/bin/env bash
# Runs a command with moto server (DynamoDB and SQS on their real wire protocols) listening on a
# free loopback port, the AWS SDK pointed at it, and stops it afterwards. Installs moto into
# .venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/moto_server ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q 'moto[server]>=5,<6'
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
.venv/bin/python scripts/moto_serial.py 127.0.0.1 "$port" > "$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
up() { python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "http://127.0.0.1:$port/moto-api/" 2>/dev/null; }
for _ in $(seq 150); do up && break; sleep 0.1; done
up || { echo "moto server did not start:"; cat "$log"; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
"$@"
