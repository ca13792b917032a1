#!/usr/bin/env bash
# End-to-end relay benchmark over loopback: postfix's smtp-source sends through a relay to
# postfix's smtp-sink, and the clock stops when the sink has received every message.
#   postern   postern-listener with the durable spool and the minimal smarthost route
#             (`delivery: {smarthost: {host: 127.0.0.1, port: SINK, tls: none}}`);
#   postfix   Postfix's smtpd → cleanup → queue → smtp client, a private instance with
#             `relayhost = [127.0.0.1]:SINK` and otherwise default settings.
# Both fsync every message before answering 250 and keep it until the sink's 250. For each
# size (SIZES, body octets as smtp-source's -l) and number of client sessions (SESSIONS),
# the two run in turn, each with a fresh sink, and one table row each gives:
#   accept msg/s    messages / time until smtp-source has sent all (all answered 250);
#   relay msg/s     messages / time until the sink has received all (end to end);
#   p50, p99        accept-to-remote-250 latency: for postfix from its log (`delay=`, per
#                   message, 10 ms resolution); for postern from the
#                   `postern_delivery_latency_seconds` histogram (buckets doubling from
#                   1 ms; the percentile is interpolated inside its bucket);
#   server CPU µs/msg and memory MiB, as bench/smtp-load.sh measures them.
# At the end: Postern's relay msg/s as a multiple of Postfix's, and for Postern whether
# delivery kept up with reception: every 0.2 s during a run bench/relay_watch.py samples the
# messages accepted (`postern_messages_accepted_total`), the messages queued for delivery
# (`postern_delivery_queued_messages`) and the sink's count; the table gives the rate the
# sink received at while the client was still sending, the largest queue depth, the depth
# when the client finished, and how long the queue took to empty after that. With
# TIMELINE=1 the samples themselves are printed too (t s, accepted, queued, at the sink).
# It also gives the CPU Postern and smtp-sink used, in % of one core over the run: a sink
# near 100 % is the bound of delivery, not Postern.
#
# Usage: bench/relay-load.sh   (from anywhere; builds the release binary first)
#   SKIP_BUILD=1  SERVERS="postfix postern"  SIZES="4096 102400"  SESSIONS="20 100"
#   MESSAGES_4096=10000  MESSAGES_102400=2000  (any size: MESSAGES_<size>, default 2000)
#   RUN_TIMEOUT=300 (seconds for one run, sending and relaying)  TIMELINE=1
#   DELIVERY_EXTRA="connectionLimit: 100" (more keys of Postern's `delivery` section)
# Loopback only; every process it starts is stopped on exit. Needs what smtp-load.sh needs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
POSTFIX=${POSTFIX:-/usr/sbin/postfix}
SERVERS=${SERVERS:-"postfix postern"}
SIZES=${SIZES:-"4096 102400"}
SESSIONS=${SESSIONS:-"20 100"}
MESSAGES_4096=${MESSAGES_4096:-10000}
MESSAGES_102400=${MESSAGES_102400:-2000}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
BIN="$ROOT/target/release/postern-listener"
CLK_TCK=$(getconf CLK_TCK)

for tool in "$SMTP_SOURCE" "$SMTP_SINK" "$POSTFIX" postconf curl python3; do
    command -v "$tool" >/dev/null || {
        echo "relay-load: $tool not found" >&2
        exit 1
    }
done
if [[ " $SERVERS " == *" postern "* ]]; then
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        (cd "$ROOT" && cargo build --release -p postern-listener >&2)
    fi
    [[ -x "$BIN" ]] || {
        echo "relay-load: $BIN missing (unset SKIP_BUILD)" >&2
        exit 1
    }
fi

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/postern-relay.XXXXXX")
SERVER_PID=""
POSTFIX_CONF=""
SINK_PID=""

stop_sink() {
    [[ -n "$SINK_PID" ]] || return 0
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
}

cleanup() {
    stop_server
    stop_sink
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# p50 and p99 in ms of postfix's delivered messages, from its log's `delay=` fields.
postfix_latency() {
    grep -h 'status=sent' "$1" | sed -E 's/.* delay=([0-9.]+),.*/\1/' | sort -n |
        awk '{ d[NR] = $1 } END {
            if (!NR) { print "n/a n/a"; exit }
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
            printf "%.0f %.0f\n", d[i50] * 1000, d[i99] * 1000
        }'
}

# p50 and p99 in ms from postern's latency histogram (cumulative buckets).
postern_latency() {
    curl -fsS "http://127.0.0.1:$1/metrics" |
        awk '/^postern_delivery_latency_seconds_bucket/ {
                match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5)
                n++; bound[n] = (le == "+Inf") ? -1 : le + 0; count[n] = $NF + 0
            }
            function pct(q,   target, i, lower, below, width) {
                target = q * count[n]; lower = 0; below = 0
                for (i = 1; i <= n; i++) {
                    if (count[i] >= target) {
                        if (bound[i] < 0) return lower * 1000
                        width = count[i] - below
                        return (lower + (bound[i] - lower) * (width ? (target - below) / width : 1)) * 1000
                    }
                    lower = bound[i]; below = count[i]
                }
                return lower * 1000
            }
            END { if (!n || !count[n]) print "n/a n/a"; else printf "%.0f %.0f\n", pct(0.50), pct(0.99) }'
}

# backlog SAMPLES T_SENT T_RELAYED N SIZE SESSIONS SERVER_CPU_S SINK_CPU_S: the
# reception-against-delivery row; CPU in % of one core over the whole run.
backlog() {
    awk -v sent="$2" -v relayed="$3" -v n="$4" -v size="$5" -v s="$6" -v cpu="$7" -v sink="$8" '
        { t = $1; q = $3; if (q > max) max = q; if (t <= sent) { atsent = $4; qsent = q; tsent = t } }
        END {
            label = (size >= 1024) ? (size / 1024) " KiB" : size " B"
            printf "| %s | %d | %.0f | %.0f | %d | %d | %.2f | %.0f | %.0f |\n", label, s, n / sent,
                (tsent > 0) ? atsent / tsent : 0, max, qsent, relayed - sent,
                cpu / relayed * 100, sink / relayed * 100
        }' "$1"
}

# run KIND SIZE SESSIONS: one measurement, printed as a table row.
run() {
    local kind=$1 size=$2 sessions=$3
    local var="MESSAGES_$size"
    local messages=${!var:-2000}
    local dir="$WORK/$kind-$size-$sessions"
    mkdir -p "$dir"
    local port admin sink
    port=$(free_port)
    admin=$(free_port)
    sink=$(free_port)

    local user=()
    [[ $(id -u) == 0 ]] && user=(-u nobody)
    "$SMTP_SINK" "${user[@]}" -c "127.0.0.1:$sink" 1024 >"$dir/sink.out" 2>&1 &
    SINK_PID=$!
    wait_port "$sink"

    case "$kind" in
    postfix) start_postfix "$dir" "$port" "$sink" ;;
    postern)
        start_postern "$dir" "$port" "$admin" \
            "delivery: {smarthost: {host: 127.0.0.1, port: $sink, tls: none}, retryInterval: 1s${DELIVERY_EXTRA:+, $DELIVERY_EXTRA}}"
        ;;
    *)
        echo "relay-load: unknown server $kind" >&2
        return 1
        ;;
    esac

    local status=ok ticks0 t0 t_sent t_relayed ticks1
    # One watcher follows the sink (and for Postern samples its metrics) until the sink
    # has every message; it prints that moment and the sink's count. It starts before
    # the clock does, and the clock starts once it is ready.
    local watch=(python3 "$ROOT/bench/relay_watch.py" "$dir/sink.out" "$messages" "$dir/t0" "$RUN_TIMEOUT")
    [[ "$kind" == postern ]] && watch+=(--admin "$admin" --samples "$dir/samples")
    "${watch[@]}" >"$dir/watch.out" &
    local watcher=$!
    while [[ ! -e "$dir/t0.ready" ]]; do
        kill -0 "$watcher" 2>/dev/null || {
            echo "relay-load: bench/relay_watch.py exited before it was ready" >&2
            return 1
        }
        sleep 0.01
    done
    ticks0=$(cpu_ticks "$SERVER_PID")
    t0=$(date +%s.%N)
    echo "$t0" >"$dir/t0.tmp" && mv "$dir/t0.tmp" "$dir/t0"
    if ! timeout "$RUN_TIMEOUT" "$SMTP_SOURCE" -d -l "$size" -m "$messages" -s "$sessions" \
        -f a@bench.test -t b@relay.test "127.0.0.1:$port" >"$dir/client.out" 2>&1; then
        status="client failed: $(tail -1 "$dir/client.out")"
    fi
    t_sent=$(date +%s.%N)
    local received=0
    wait "$watcher" || true
    read -r t_relayed received <"$dir/watch.out"
    ((received >= messages)) || status="sink has $received of $messages"
    ticks1=$(cpu_ticks "$SERVER_PID")
    local sink_ticks
    sink_ticks=$(awk '{ print $14 + $15 }' "/proc/$SINK_PID/stat")
    if [[ "$kind" == postern ]]; then
        backlog "$dir/samples" "$(awk -v a="$t_sent" -v b="$t0" 'BEGIN { print a - b }')" \
            "$(awk -v a="$t_relayed" -v b="$t0" 'BEGIN { print a - b }')" \
            "$messages" "$size" "$sessions" \
            "$(awk -v t="$((ticks1 - ticks0))" -v hz="$CLK_TCK" 'BEGIN { print t / hz }')" \
            "$(awk -v t="$sink_ticks" -v hz="$CLK_TCK" 'BEGIN { print t / hz }')" >>"$WORK/backlog"
        if [[ "${TIMELINE:-0}" == 1 ]]; then
            echo "timeline $kind $size B x $sessions sessions (t s, accepted, queued, at the sink):" >>"$WORK/timelines"
            cat "$dir/samples" >>"$WORK/timelines"
        fi
    fi
    local rss latency
    rss=$(peak_rss_kib "$SERVER_PID")
    if [[ "$kind" == postfix ]]; then
        latency=$(postfix_latency "$dir/postfix/maillog")
    else
        latency=$(postern_latency "$admin")
    fi
    stop_server
    stop_sink
    rm -rf "$dir/spool" "$dir/postfix/queue"

    awk -v kind="$kind" -v size="$size" -v s="$sessions" -v n="$messages" \
        -v t0="$t0" -v ts="$t_sent" -v tr="$t_relayed" -v ticks="$((ticks1 - ticks0))" \
        -v hz="$CLK_TCK" -v rss="$rss" -v latency="$latency" -v status="$status" \
        -v rates="$WORK/rates" 'BEGIN {
        split(latency, l, " ")
        accept = n / (ts - t0); relay = n / (tr - t0)
        label = (size >= 1024) ? (size / 1024) " KiB" : size " B"
        printf "| %s | %s | %d | %d | %.0f | %.0f | %s | %s | %.0f | %.1f | %s |\n",
            kind, label, s, n, accept, relay, l[1], l[2], ticks / hz / n * 1e6, rss / 1024, status
        printf "%s %s %d %.1f\n", kind, label, s, relay >> rates
    }'
}

ratios() {
    echo
    echo "| size | sessions | postern ÷ postfix, relay msg/s |"
    echo "|---|---|---|"
    awk '{ key = $2 " " $3 "|" $4; rate[$1, key] = $5; if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
        END {
            for (i = 0; i < n; i++) {
                key = order[i]
                split(key, part, "|")
                r = (rate["postern", key] && rate["postfix", key]) ? sprintf("%.2f", rate["postern", key] / rate["postfix", key]) : "n/a"
                printf "| %s | %s | %s |\n", part[1], part[2], r
            }
        }' "$WORK/rates"
}

echo "relay-load: $(nproc) CPUs, queue on $(df -T "$WORK" | awk 'NR == 2 { print $2 }'), $(uptime | sed 's/.*load/load/')" >&2
echo
echo "| server | size | sessions | messages | accept msg/s | relay msg/s | p50 ms | p99 ms | server CPU µs/msg | memory MiB | status |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
    for sessions in $SESSIONS; do
        for kind in $SERVERS; do
            run "$kind" "$size" "$sessions"
        done
    done
done
if [[ -s "$WORK/rates" ]]; then ratios; fi
if [[ -s "$WORK/backlog" ]]; then
    echo
    echo "| size | sessions | postern accept msg/s | at the sink while sending, msg/s | max queued | queued when sending ended | queue emptied after s | postern CPU % | smtp-sink CPU % |"
    echo "|---|---|---|---|---|---|---|---|---|"
    cat "$WORK/backlog"
fi
if [[ -s "$WORK/timelines" ]]; then
    echo
    echo '```text'
    cat "$WORK/timelines"
    echo '```'
fi
echo "relay-load: done, $(uptime | sed 's/.*load/load/')" >&2
