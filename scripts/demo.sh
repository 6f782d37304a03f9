#!/usr/bin/env bash
# make demo: start a simulated BBB server and talk to it the way a front-end
# does, with checksums computed in the shell, then through the balancer and
# agents as they arrive.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
SECRET=${SECRET:-demo-secret-$(date +%s)}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# sign CALL QUERY -> the query with its sha256 checksum appended
sign() {
	local sum
	sum=$(printf '%s' "$1$2$SECRET" | sha256sum | cut -d' ' -f1)
	if [ -n "$2" ]; then printf '%s&checksum=%s' "$2" "$sum"; else printf 'checksum=%s' "$sum"; fi
}

step "start bbb-sim on a free loopback port"
"$BIN/bbb-sim" --listen 127.0.0.1:0 --secret "$SECRET" --recordings-dir "$work/recordings" >"$work/sim.log" 2>&1 &
for _ in $(seq 50); do
	url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/sim.log" | head -n1 || true)
	[ -n "$url" ] && break
	sleep 0.1
done
[ -n "${url:-}" ] || { echo "bbb-sim did not start:"; cat "$work/sim.log"; exit 1; }
api="$url/bigbluebutton/api"
echo "bbb-sim is at $api"

step "API root (health check, no checksum)"
curl -fsS "$api"; echo

step "create, signed with sha256 in the shell"
q='meetingID=demo-room&name=Demo+Room&record=true'
curl -fsS "$api/create?$(sign create "$q")"; echo

step "join (the browser would follow this 302)"
q='fullName=Ada&meetingID=demo-room&role=MODERATOR'
curl -sS -o /dev/null -w 'HTTP %{http_code} -> %{redirect_url}\n' "$api/join?$(sign join "$q")"

step "getMeetings"
curl -fsS "$api/getMeetings?$(sign getMeetings '')"; echo

step "a wrong checksum is refused"
curl -fsS "$api/getMeetings?checksum=0000000000000000000000000000000000000000"; echo

step "end the meeting: the simulator publishes a recording"
curl -fsS "$api/end?$(sign end 'meetingID=demo-room')"; echo
find "$work/recordings" -type f | sed "s|$work/||" | sort | head -n 20

step "getRecordings"
curl -fsS "$api/getRecordings?$(sign getRecordings 'meetingID=demo-room')" | head -c 1200; echo
