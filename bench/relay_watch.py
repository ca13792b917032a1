#!/usr/bin/env python3
"""Watches one bench/relay-load.sh run from a single process, so that measuring costs
the two CPUs little and the same for both servers: it follows smtp-sink's counter output
every 20 ms (reading only what was appended) until the sink has every message, then
prints the moment it did (seconds since the epoch). With --admin it also samples
Postern's /metrics every 0.2 s and appends "t accepted queued at_sink" lines to
--samples, ending with one sample 0.3 s after the last message arrived.

Usage: relay_watch.py SINK_OUT MESSAGES T0_FILE TIMEOUT_S [--admin PORT --samples FILE]
Started before the clock: once ready it creates T0_FILE.ready, then waits for T0_FILE to
hold the run's start time (seconds since the epoch, written by the script just before
it starts the client). Exit status 1 (after printing the time and the count) when the
timeout passed first.
"""

import argparse
import re
import sys
import time
import http.client
import os

MESG = re.compile(rb"mesg=(\d+)")


class Sink:
    """smtp-sink -c rewrites "sess=N quit=N mesg=N\\r" in place; the last one counts."""

    def __init__(self, path):
        self.file = open(path, "rb")
        self.tail = b""
        self.count = 0

    def poll(self):
        data = self.tail + self.file.read()
        last = None
        for last in MESG.finditer(data):
            pass
        if last is not None:
            self.count = int(last.group(1))
        # Keep a possibly cut-off counter for the next read.
        self.tail = data[-64:]
        return self.count


def scrape(port):
    accepted = queued = 0
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/metrics")
        body = connection.getresponse().read().decode()
        connection.close()
        for line in body.splitlines():
            name, _, value = line.partition(" ")
            if name == "postern_messages_accepted_total":
                accepted = int(float(value))
            elif name == "postern_delivery_queued_messages":
                queued = int(float(value))
    except (OSError, http.client.HTTPException):
        pass
    return accepted, queued


def main():
    p = argparse.ArgumentParser()
    p.add_argument("sink_out")
    p.add_argument("messages", type=int)
    p.add_argument("t0_file")
    p.add_argument("timeout", type=float)
    p.add_argument("--admin", type=int)
    p.add_argument("--samples")
    a = p.parse_args()

    sink = Sink(a.sink_out)
    samples = open(a.samples, "a") if a.admin else None
    open(a.t0_file + ".ready", "w").close()
    while True:
        try:
            with open(a.t0_file) as f:
                a.t0 = float(f.read())
            break
        except (OSError, ValueError):
            time.sleep(0.002)
    deadline = time.time() + a.timeout
    next_sample = time.time()

    def sample(now):
        accepted, queued = scrape(a.admin)
        samples.write(f"{now - a.t0:.2f} {accepted} {queued} {sink.count}\n")

    while True:
        now = time.time()
        if sink.poll() >= a.messages or now > deadline:
            break
        if samples and now >= next_sample:
            sample(now)
            next_sample = now + 0.2
        time.sleep(0.02)
    done = time.time()
    print(f"{done:.6f} {sink.count}")
    if samples:
        time.sleep(0.3)
        sample(time.time())
        samples.close()
    return 0 if sink.count >= a.messages else 1


if __name__ == "__main__":
    sys.exit(main())
