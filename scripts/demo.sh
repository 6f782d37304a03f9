#!/usr/bin/env bash
# make demo: bbb-balancer on its embedded database in front of three simulated
# BBB servers, driven the way a front-end and an operator drive it. Checksums
# are computed in the shell, as any BBB API client would. Needs only the
# binaries `make build` puts in bin/, curl and coreutils.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
LB_SECRET=demo-balancer-secret-$RANDOM$RANDOM
ADMIN_TOKEN=demo-admin-$RANDOM$RANDOM
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_url LOGFILE: print the first http://127.0.0.1:PORT the process logged.
wait_url() {
	local url=""
	for _ in $(seq 100); do
		url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$1" | head -n1 || true)
		[ -n "$url" ] && { echo "$url"; return; }
		sleep 0.1
	done
	echo "did not start:" >&2; cat "$1" >&2; exit 1
}

# api CALL QUERY: a signed GET to the balancer's BBB API (sha256).
api() {
	local sum q=$2
	sum=$(printf '%s' "$1$q$LB_SECRET" | sha256sum | cut -d' ' -f1)
	[ -n "$q" ] && q="$q&"
	curl -fsS "$LB/bigbluebutton/api/$1?${q}checksum=$sum"
}

lb() { "$BIN/bbb-balancer" --url "$LB" --admin-token "$ADMIN_TOKEN" "$@"; }

step "start bbb-balancer (embedded database in $work/balancer)"
"$BIN/bbb-balancer" serve --listen 127.0.0.1:0 --secret "$LB_SECRET" --agent-token "demo-agent-$RANDOM" \
	--admin-token "$ADMIN_TOKEN" --data-dir "$work/balancer" --poll-interval 1s >"$work/balancer.log" 2>&1 &
pids+=($!)
LB=$(wait_url "$work/balancer.log")
echo "front-ends use $LB/bigbluebutton/api/ with the balancer's secret"

step "start three simulated BBB servers and add them to the balancer"
secrets=()
for i in 1 2 3; do
	secrets[$i]=node-secret-$i-$RANDOM$RANDOM
	"$BIN/bbb-sim" --listen 127.0.0.1:0 --secret "${secrets[$i]}" --recordings-dir "$work/sim$i" >"$work/sim$i.log" 2>&1 &
	pids+=($!)
done
for i in 1 2 3; do
	url=$(wait_url "$work/sim$i.log")
	id=$(lb servers add "$url/bigbluebutton/api/" "${secrets[$i]}")
	echo "bbb$i: $url -> server id $id"
done
sleep 1.5
lb status

step "front-end: create 9 meetings through the balancer"
for i in $(seq 1 9); do
	api create "meetingID=class-$i&name=Class+$i&record=true" | grep -o '<internalMeetingID>[^<]*' | sed 's/<internalMeetingID>/created /'
done

step "front-end: join class-1 (the browser follows this 302 to the meeting's node)"
curl -sS -o /dev/null -w 'HTTP %{http_code} -> %{redirect_url}\n' \
	"$LB/bigbluebutton/api/join?fullName=Ada&meetingID=class-1&role=MODERATOR&checksum=$(printf '%s' "joinfullName=Ada&meetingID=class-1&role=MODERATOR$LB_SECRET" | sha256sum | cut -d' ' -f1)"

step "front-end: getMeetings answers for the whole fleet"
api getMeetings "" | grep -o '<meetingID>[^<]*' | sed 's/<meetingID>/  /' | sort

sleep 1.5
step "operator: bbb-balancer status"
lb status

step "operator: cordon the first server; new meetings go elsewhere, running ones go on"
first=$(lb status --json | grep -o '"id": "[^"]*"' | head -n1 | cut -d'"' -f4)
lb servers cordon "$first"
for i in 10 11 12; do api create "meetingID=class-$i&name=Class+$i" >/dev/null; done
sleep 1.5
lb status

step "a wrong checksum gets BBB's answer"
curl -fsS "$LB/bigbluebutton/api/getMeetings?checksum=0000000000000000000000000000000000000000"; echo

step "end every meeting; the cordoned server, once empty, turns disabled"
for i in $(seq 1 12); do api end "meetingID=class-$i" >/dev/null; done
sleep 2.5
lb status
echo
echo "demo done: the balancer placed, joined, listed, cordoned and ended meetings on three simulated BBB servers."
