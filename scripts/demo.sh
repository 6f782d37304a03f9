#!/usr/bin/env bash
# make demo: the whole fleet on one machine with no external services.
# bbb-balancer on its embedded database, three simulated BBB servers with a
# bbb-agent each (nodes bbb1, bbb2, bbb3); meetings are created and joined
# through the balancer as a front-end and its users' browsers would
# (checksums computed in the shell), then one node is drained while it has
# meetings: it takes no new meetings, waits for its meetings to end, then
# leaves the fleet by itself. Ends with the dashboard URL and keeps running until
# Ctrl-C (DEMO_WAIT=0: exits). Needs only the binaries in bin/, curl and coreutils.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
LB_SECRET=demo-balancer-secret-$RANDOM$RANDOM
AGENT_TOKEN=demo-agent-token-$RANDOM$RANDOM
ADMIN_TOKEN=demo-admin-token-$RANDOM$RANDOM
INTERVAL=1s
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
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

# until_true SECONDS COMMAND...: retry a check for a while.
until_true() {
	local n=$(( $1 * 10 )); shift
	for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
	echo "timed out waiting for: $*" >&2; return 1
}

# api CALL QUERY: a signed GET to the balancer's BBB API (sha256).
api() {
	local sum q=$2
	sum=$(printf '%s' "$1$q$LB_SECRET" | sha256sum | cut -d' ' -f1)
	[ -n "$q" ] && q="$q&"
	curl -fsS "$LB/bigbluebutton/api/$1?${q}checksum=$sum"
}

# node_of URL: the name of the node whose simulated BBB serves URL.
node_of() {
	local i
	for i in "${!sim[@]}"; do
		case $1 in "${sim[$i]}"/*) echo "bbb$i"; return ;; esac
	done
	echo "$1"
}

# join MEETING NAME ROLE: a user's browser joins through the balancer: it
# follows the balancer's 302 to the meeting's node, whose join adds the user
# (and sends the browser on to its HTML5 client, not followed here).
join() {
	local q="fullName=$2&meetingID=$1&role=$3" sum to
	sum=$(printf '%s' "join$q$LB_SECRET" | sha256sum | cut -d' ' -f1)
	to=$(curl -fsS -o /dev/null -w '%{redirect_url}' "$LB/bigbluebutton/api/join?$q&checksum=$sum")
	[ -n "$to" ] || { echo "join $1: the balancer did not redirect" >&2; return 1; }
	curl -sS -o /dev/null "$to"
	printf '  %-8s joins %s (%s) on %s\n' "$2" "$1" "$3" "$(node_of "$to")"
}

lb() { "$BIN/bbb-balancer" --url "$LB" --admin-token "$ADMIN_TOKEN" "$@"; }
agent() { local i=$1; shift; "$BIN/bbb-agent" --admin-socket "$work/agent$i.sock" "$@"; }
online_count() { lb status --json | grep -c '"online": true' || true; }
all_online() { [ "$(online_count)" -eq "$1" ]; }

step "start bbb-balancer on its embedded database"
"$BIN/bbb-balancer" serve --listen 127.0.0.1:0 --secret "$LB_SECRET" --agent-token "$AGENT_TOKEN" \
	--admin-token "$ADMIN_TOKEN" --data-dir "$work/balancer" >"$work/balancer.log" 2>&1 &
pids+=($!)
LB=$(wait_url "$work/balancer.log")
echo "front-ends (Greenlight, Moodle) use $LB/bigbluebutton/api/ with the balancer's secret"

step "start three simulated BBB servers, each with a bbb-agent"
for i in 1 2 3; do
	secret=node-secret-$i-$RANDOM$RANDOM
	"$BIN/bbb-sim" --listen 127.0.0.1:0 --secret "$secret" >"$work/sim$i.log" 2>&1 &
	pids+=($!)
	sim[$i]=$(wait_url "$work/sim$i.log")
	"$BIN/bbb-agent" run --balancer-url "$LB" --agent-token "$AGENT_TOKEN" --bbb-url "${sim[$i]}" --bbb-secret "$secret" \
		--node-name "bbb$i" --state-dir "$work/agent$i" --admin-socket "$work/agent$i.sock" \
		--report-interval "$INTERVAL" --drain-deadline 10m --logind=false --recordings-dir "$work" >"$work/agent$i.log" 2>&1 &
	pids+=($!)
	agent_pid[$i]=$!
	echo "bbb$i: BBB at ${sim[$i]}, agent pid ${agent_pid[$i]}"
done
until_true 15 all_online 3
lb servers list
echo
lb status
echo
agent 1 status

step "front-end: create 6 meetings through the balancer"
for i in $(seq 1 6); do
	api create "meetingID=class-$i&name=Class+$i" | grep -o '<meetingID>[^<]*' | sed 's/<meetingID>/  created /'
done

step "users join through the balancer (each browser follows a 302 to the meeting's node)"
join class-1 Ada MODERATOR
join class-1 Grace VIEWER
join class-1 Linus VIEWER
join class-2 Margaret MODERATOR
join class-2 Alan VIEWER
join class-3 Barbara MODERATOR
join class-4 Edsger MODERATOR
join class-4 Ken VIEWER
join class-4 Dennis VIEWER
join class-5 Frances MODERATOR

step "the agents report the meetings and their participants"
sleep 2
lb status

step "operator: bbb-agent drain on bbb1 while it has meetings"
on_bbb1=$(curl -fsS "${sim[1]}/sim/state" | grep -o '"meetingID":"[^"]*"' | cut -d'"' -f4 | sort -u)
echo "meetings on bbb1: $(echo $on_bbb1)"
agent 1 drain
sleep 1.5
lb status
echo
agent 1 status

step "new meetings go to the other servers while bbb1 drains; its own go on"
for i in 7 8 9; do api create "meetingID=class-$i&name=Class+$i" >/dev/null; done
sleep 1.5
lb status

step "the meetings on bbb1 end; its agent deregisters and exits by itself"
for m in $on_bbb1; do api end "meetingID=$m" | grep -o '<messageKey>[^<]*' | sed "s/<messageKey>/  end $m: /"; done
until_true 15 bash -c "! kill -0 ${agent_pid[1]} 2>/dev/null"
wait "${agent_pid[1]}" && echo "bbb1's agent exited with status 0"
tail -n 4 "$work/agent1.log" | sed 's/^/  agent1: /'
echo
lb status
echo
agent 2 status
echo
echo "demo done: three agents joined the fleet, meetings were placed, and bbb1 left without ending a meeting."

step "the dashboard and a room"
curl -fsS -o /dev/null "$LB/dashboard/login"
lb rooms create "Demo room"
echo
echo "dashboard: $LB/dashboard/  (log in with the admin token $ADMIN_TOKEN)"
if [ "${DEMO_WAIT:-1}" = 0 ]; then
	exit 0
fi
echo "the fleet keeps running so that you can look at it; Ctrl-C stops it"
sleep infinity &
pids+=($!)
wait $!
