#!/usr/bin/env bash
# End-to-end SMTP load test of postern-listener over loopback, with postfix's
# smtp-source as the client, compared with:
#   sink      postfix smtp-sink: an SMTP server that discards every message; the upper
#             bound of the protocol path on this machine, with no storage at all;
#   deferred  postern with `deferredSpool: true`: acknowledged from memory, no disk write;
#   durable   postern with the default durable spool: fsynced (group commit) before 250;
#   postfix   Postfix's own smtpd (Debian postfix), a private instance on its own loopback
#             port with `defer_transports = smtp`, so every message it acknowledges stays
#             in its durable queue (fsynced by cleanup), as Postern's durable spool does.
# The kinds run interleaved (for each size and session count, one run of each in turn),
# so a change in the machine's load hits all of them alike; at the end a table gives
# Postern's durable msg/s as a multiple of Postfix's, smtp-sink's and deferred Postern's.
# For each server, message size (SIZES, octets of body as smtp-source's -l) and number
# of concurrent sessions (SESSIONS) it starts a fresh server, sends MESSAGES_<size>
# messages with `smtp-source -d` (sessions stay connected, as KumoMTA's traffic-gen
# does; CONNECTION_PER_MESSAGE=1 drops -d) and prints one markdown table row:
# messages/s and million messages/hour from wall time, server CPU per message
# (/proc/PID/stat), the server's peak RSS (VmHWM) and, for postern, fsyncs per
# message (`postern_spool_fsyncs_total`) and the mean time of one group commit
# (`postern_spool_fsync_duration_seconds`), both from the admin endpoint. For postfix the
# CPU is that of its master and every child process (reaped children included) and the
# memory the sum of its live processes' Pss at the end of the run. postern runs
# with `maxMessagesPerConnection: 1000000` so one session can send every message.
#
# Usage: bench/smtp-load.sh   (from anywhere; builds the release binary first)
#   SKIP_BUILD=1  use target/release/postern-listener as it is
#   SERVERS="sink postfix deferred durable"  SIZES="1024 102400"  SESSIONS="1 10 50"
#   MESSAGES_1024=40000  MESSAGES_102400=10000  (any size: MESSAGES_<size>, default 2000)
# Everything listens on 127.0.0.1 only; every process it starts is stopped on exit.
# Needs: smtp-source, smtp-sink and postfix (Debian package postfix), curl, python3 (free
# ports); run as root (a Postfix instance needs its `postfix` user). scripts/install-deps
# installs them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
SERVERS=${SERVERS:-"sink postfix deferred durable"}
SIZES=${SIZES:-"1024 102400"}
SESSIONS=${SESSIONS:-"1 10 50"}
MESSAGES_1024=${MESSAGES_1024:-40000}
MESSAGES_102400=${MESSAGES_102400:-10000}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
POSTFIX=${POSTFIX:-/usr/sbin/postfix}
BIN="$ROOT/target/release/postern-listener"
CLK_TCK=$(getconf CLK_TCK)

for tool in "$SMTP_SOURCE" "$SMTP_SINK" "$POSTFIX" postconf curl python3; do
    command -v "$tool" >/dev/null || {
        echo "smtp-load: $tool not found" >&2
        exit 1
    }
done

# Postern runs only for the deferred and durable kinds.
if [[ " $SERVERS " == *" deferred "* || " $SERVERS " == *" durable "* ]]; then
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        (cd "$ROOT" && cargo build --release -p postern-listener >&2)
    fi
    [[ -x "$BIN" ]] || {
        echo "smtp-load: $BIN missing (unset SKIP_BUILD)" >&2
        exit 1
    }
fi

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/postern-load.XXXXXX")
SERVER_PID=""
POSTFIX_CONF=""

cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server KIND RUNDIR PORT ADMIN_PORT: starts the server, sets SERVER_PID.
start_server() {
    local kind=$1 dir=$2 port=$3 admin=$4
    case "$kind" in
    sink)
        local user=()
        # smtp-sink refuses to run as root without an unprivileged user to switch to.
        [[ $(id -u) == 0 ]] && user=(-u nobody)
        "$SMTP_SINK" "${user[@]}" "127.0.0.1:$port" 256 >"$dir/server.out" 2>&1 &
        SERVER_PID=$!
        wait_port "$port"
        ;;
    postfix)
        start_postfix "$dir" "$port"
        ;;
    deferred | durable)
        local deferred=false
        [[ "$kind" == deferred ]] && deferred=true
        start_postern "$dir" "$port" "$admin" "deferredSpool: $deferred"
        ;;
    *)
        echo "smtp-load: unknown server $kind" >&2
        return 1
        ;;
    esac
}

# run KIND SIZE SESSIONS: one measurement, printed as a table row.
run() {
    local kind=$1 size=$2 sessions=$3
    local var="MESSAGES_$size"
    local messages=${!var:-2000}
    local dir="$WORK/$kind-$size-$sessions"
    mkdir -p "$dir"
    local port admin
    port=$(free_port)
    admin=$(free_port)
    start_server "$kind" "$dir" "$port" "$admin"

    local fsyncs0=0 accepted0=0 fsync_s0=0 fsync_n0=0
    if [[ "$kind" == deferred || "$kind" == durable ]]; then
        fsyncs0=$(metric "$admin" postern_spool_fsyncs_total)
        accepted0=$(metric "$admin" postern_messages_accepted_total)
        fsync_s0=$(metric "$admin" postern_spool_fsync_duration_seconds_sum)
        fsync_n0=$(metric "$admin" postern_spool_fsync_duration_seconds_count)
    fi
    local ticks0 t0 t1 ticks1 status=ok
    local reuse=(-d)
    [[ "${CONNECTION_PER_MESSAGE:-0}" == 1 ]] && reuse=()
    ticks0=$(cpu_ticks "$SERVER_PID")
    t0=$(date +%s.%N)
    if ! timeout "$RUN_TIMEOUT" "$SMTP_SOURCE" "${reuse[@]}" -l "$size" -m "$messages" -s "$sessions" \
        -f a@bench.test -t b@bench.test "127.0.0.1:$port" >"$dir/client.out" 2>&1; then
        status="client failed: $(tail -1 "$dir/client.out")"
    fi
    t1=$(date +%s.%N)
    ticks1=$(cpu_ticks "$SERVER_PID")
    local rss fsyncs="n/a" accepted="n/a" commit_ms="n/a"
    rss=$(peak_rss_kib "$SERVER_PID")
    if [[ "$kind" == deferred || "$kind" == durable ]]; then
        local f1 a1 s1 n1
        f1=$(metric "$admin" postern_spool_fsyncs_total)
        a1=$(metric "$admin" postern_messages_accepted_total)
        s1=$(metric "$admin" postern_spool_fsync_duration_seconds_sum)
        n1=$(metric "$admin" postern_spool_fsync_duration_seconds_count)
        accepted=$((a1 - accepted0))
        fsyncs=$(awk -v f="$((f1 - fsyncs0))" -v m="$accepted" 'BEGIN { printf "%.3f", m ? f / m : 0 }')
        commit_ms=$(awk -v s="$s1" -v s0="$fsync_s0" -v n="$n1" -v n0="$fsync_n0" \
            'BEGIN { if (n > n0) printf "%.2f", (s - s0) / (n - n0) * 1000; else print "n/a" }')
        [[ "$accepted" == "$messages" ]] || status="only $accepted of $messages accepted"
    fi
    stop_server
    rm -rf "$dir/spool" "$dir/postfix/queue"

    awk -v kind="$kind" -v size="$size" -v s="$sessions" -v n="$messages" -v rates="$WORK/rates" \
        -v t0="$t0" -v t1="$t1" -v ticks="$((ticks1 - ticks0))" -v hz="$CLK_TCK" \
        -v rss="$rss" -v fsyncs="$fsyncs" -v commit="$commit_ms" -v status="$status" 'BEGIN {
        wall = t1 - t0
        rate = n / wall
        label = (size >= 1024) ? (size / 1024) " KiB" : size " B"
        printf "| %s | %s | %d | %d | %.2f | %.0f | %.2f | %.1f | %.0f | %.1f | %s | %s | %s |\n",
            kind, label, s, n, wall, rate,
            rate * 3600 / 1e6, rate * size / 1048576, ticks / hz / n * 1e6, rss / 1024,
            fsyncs, commit, status
        printf "%s %s %d %.1f\n", kind, label, s, rate >> rates
    }'
}

# Postern's durable msg/s divided by each other server's, per size and session count.
ratios() {
    echo
    echo "| size | sessions | durable ÷ postfix | durable ÷ smtp-sink | durable ÷ deferred |"
    echo "|---|---|---|---|---|"
    awk '{ key = $2 " " $3 "|" $4; rate[$1, key] = $5; if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
        function ratio(a, b) { return (rate[a, key] && rate[b, key]) ? sprintf("%.2f", rate[a, key] / rate[b, key]) : "n/a" }
        END {
            for (i = 0; i < n; i++) {
                key = order[i]
                split(key, part, "|")
                printf "| %s | %s | %s | %s | %s |\n", part[1], part[2],
                    ratio("durable", "postfix"), ratio("durable", "sink"), ratio("durable", "deferred")
            }
        }' "$WORK/rates"
}

echo "smtp-load: $(nproc) CPUs ($(lscpu | awk -F': *' '/^Model name/ { print $2; exit }')), spool on $(df -T "$WORK" | awk 'NR == 2 { print $2 }'), $(uptime | sed 's/.*load/load/')" >&2
echo "smtp-load: reuse connections: $([[ "${CONNECTION_PER_MESSAGE:-0}" == 1 ]] && echo no || echo 'yes (-d)')" >&2
echo
echo "| server | size | sessions | messages | wall s | msg/s | M msg/h | MiB/s | server CPU µs/msg | peak RSS MiB | fsyncs/msg | commit ms | status |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
    for sessions in $SESSIONS; do
        for kind in $SERVERS; do
            run "$kind" "$size" "$sessions"
        done
    done
done
if [[ -s "$WORK/rates" ]]; then ratios; fi
echo "smtp-load: done, $(uptime | sed 's/.*load/load/')" >&2
