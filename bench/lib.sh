#!/usr/bin/env bash
# bench/lib.sh: what the load scripts share (sourced, not run): free ports, waiting for a
# port, Postern's metrics, a process's CPU and peak RSS (with its children, for Postfix),
# and a private Postfix instance on a loopback port. Callers define SERVER_PID and
# POSTFIX_CONF (empty when the server is not Postfix) and set POSTFIX to the postfix
# binary and BIN to postern-listener.

# Stops the server of the current run: SIGTERM, then SIGKILL after 5 s.
stop_server() {
    if [[ -n "$POSTFIX_CONF" ]]; then
        "$POSTFIX" -c "$POSTFIX_CONF" stop >/dev/null 2>&1 || true
        POSTFIX_CONF=""
    fi
    local pid=$SERVER_PID
    SERVER_PID=""
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts TCP connections on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# Value of one unlabelled metric from postern's admin endpoint (0 if absent).
metric() {
    curl -fsS "http://127.0.0.1:$1/metrics" |
        awk -v name="$2" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }'
}

# The live child processes of process $1.
children() {
    awk -v parent="$1" '$4 == parent { print $1 }' /proc/[0-9]*/stat 2>/dev/null || true
}

# CPU ticks (user + system) used so far by process $1; for postfix also by its children,
# reaped (cutime + cstime) and live.
cpu_ticks() {
    if [[ -n "$POSTFIX_CONF" ]]; then
        local total child
        total=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat")
        for child in $(children "$1"); do
            total=$((total + $(awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null || echo 0)))
        done
        echo "$total"
    else
        awk '{ print $14 + $15 }' "/proc/$1/stat"
    fi
}

# Memory in KiB of process $1: its peak RSS (VmHWM); for Postfix, whose many processes
# share their libraries, the sum of its live processes' proportional set sizes (Pss) at
# the time of the call, so shared pages count once.
peak_rss_kib() {
    if [[ -z "$POSTFIX_CONF" ]]; then
        awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
        return
    fi
    local pid total=0
    for pid in "$1" $(children "$1"); do
        total=$((total + $(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

# start_postfix DIR PORT [NEXT_HOP_PORT]: a private Postfix instance whose smtpd listens
# on 127.0.0.1:PORT and relays for loopback clients. Without NEXT_HOP_PORT it defers every
# message (each stays in its durable queue); with it, it relays every message to
# 127.0.0.1:NEXT_HOP_PORT. Sets POSTFIX_CONF and SERVER_PID (the master).
start_postfix() {
    local dir=$1 port=$2 next_hop=${3:-}
    local route="defer_transports = smtp"
    [[ -n "$next_hop" ]] && route="relayhost = [127.0.0.1]:$next_hop"
    local conf="$dir/postfix/conf"
    mkdir -p "$conf" "$dir/postfix/queue" "$dir/postfix/data"
    chown postfix: "$dir/postfix/data"
    # Postfix's daemons run as the postfix user: they must reach the data directory.
    chmod go+x "$dir/.." "$dir" "$dir/postfix"
    cp /etc/postfix/master.cf "$conf/master.cf"
    cat >"$conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/postfix/queue
data_directory = $dir/postfix/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject
$route
default_process_limit = 200
maillog_file = $dir/postfix/maillog
maillog_file_prefixes = $dir/postfix
EOF
    # Only our smtpd, on our port, and no service in a chroot (it would need /etc copied).
    postconf -c "$conf" -M -X smtp/inet
    postconf -c "$conf" -M "127.0.0.1:$port/inet=127.0.0.1:$port inet n - n - - smtpd"
    postconf -c "$conf" -F '*/*/chroot = n'
    POSTFIX_CONF=$conf
    "$POSTFIX" -c "$conf" start >"$dir/server.out" 2>&1 || {
        echo "bench: postfix did not start:" >&2
        cat "$dir/server.out" "$dir/postfix/maillog" >&2
        return 1
    }
    wait_port "$port"
    SERVER_PID=$(tr -d ' ' <"$dir/postfix/queue/pid/master.pid")
}

# start_postern DIR PORT ADMIN_PORT [LISTENER_KEY...]: postern-listener ($BIN) on
# 127.0.0.1:PORT relaying for loopback clients, with its spool and records under DIR and
# each extra LISTENER_KEY (one YAML line, e.g. "deferredSpool: true") added to the
# listener; waits until /readyz answers. Sets SERVER_PID.
start_postern() {
    local dir=$1 port=$2 admin=$3
    shift 3
    {
        echo "listeners:"
        echo "  - listen: '127.0.0.1:$port'"
        echo "    hostname: bench.test"
        echo "    relayHosts: ['127.0.0.0/8']"
        echo "    maxMessagesPerConnection: 1000000"
        local key
        for key in "$@"; do
            echo "    $key"
        done
        echo "spool:"
        echo "  path: '$dir/spool'"
        echo "log: '$dir/records.jsonl'"
        echo "admin:"
        echo "  listen: '127.0.0.1:$admin'"
    } >"$dir/config.yaml"
    "$BIN" --config "$dir/config.yaml" >"$dir/server.out" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench: postern-listener did not become ready:" >&2
    cat "$dir/server.out" >&2
    return 1
}
