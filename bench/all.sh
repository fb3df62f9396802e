#!/usr/bin/env bash
# Every benchmark back to back in one invocation (issue 16 item 5): items 1-3 of issue 16 and
# the earlier figures, re-measured in the same run so that no regression hides between them.
#
# Usage (from anywhere; about 15 minutes on the 2-core machine):
#     bench/all.sh 2>&1 | tee all.log
#
# Each benchmark prints its own side-by-side ratios; this script only runs them in turn, with
# sizes chosen to fit the time (noted beside each where they differ from the benchmark's
# default), and prints the date, commit, load and each step's exit code and duration. A step
# that misses a target (exit 1) does not stop the others.
#
# The PostgreSQL round of bench/shared_rate.py needs a server: PCXBATCH_BENCH_PG=postgresql://...
# names one; else, as root with Debian's postgresql and the pcxtest account (as .ci/run makes
# it), a throwaway one is initdb'd into a temporary folder on a free loopback port and stopped at
# the end; else that round is skipped and says so. Host B's clock is 3 s ahead (faketime) when
# faketime is installed (bench/shared_rate.py checks that it works). bench/sandbox_load.sh needs
# wrk (Debian: apt-get install -y wrk); without it that step is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

echo "=== bench/all.sh, $(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- pcxbatch bench || echo ' (with uncommitted changes)')"
echo "=== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $($PY --version)"

started=$(date +%s)
step() {  # step NAME COMMAND...: run it, then say how it ended and how long it took
    local name=$1 t0 rc
    shift
    echo
    echo "=== $name: $*"
    t0=$(date +%s)
    "$@"
    rc=$?
    echo "=== $name: exit $rc after $(($(date +%s) - t0)) s (load average $(cut -d' ' -f1 /proc/loadavg))"
}

PG=${PCXBATCH_BENCH_PG:-}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG" ] && [ -n "$PG_BIN" ] && [ "$(id -u)" -eq 0 ] && id pcxtest >/dev/null 2>&1; then
    PG_DIR=$(mktemp -d)
    PG_PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    chown pcxtest "$PG_DIR"
    # initdb refuses root: the server runs as pcxtest, trusting loopback, for this script only.
    if su -s /bin/sh pcxtest -c "'$PG_BIN/initdb' -D '$PG_DIR/data' -A trust -U pcxtest >/dev/null \
        && '$PG_BIN/pg_ctl' -D '$PG_DIR/data' -l '$PG_DIR/log' -w \
           -o \"-k '$PG_DIR' -h 127.0.0.1 -p $PG_PORT\" start >/dev/null"; then
        trap "su -s /bin/sh pcxtest -c \"'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -m fast stop\" >/dev/null; rm -rf '$PG_DIR'" EXIT
        PG="postgresql://pcxtest@127.0.0.1:$PG_PORT/postgres"
    else
        echo "could not start a throwaway PostgreSQL: the PostgreSQL round is skipped" >&2
    fi
fi

# Start-up first: it is the one most moved by whatever else the machine is doing, and the
# cheapest. Then the earlier benchmarks (issues 2, 5, 14), then issue 16's items 1-3.
step "start-up (--help)" $PY bench/startup.py  # 20 rounds
if command -v wrk >/dev/null; then
    # A free port, not the script's 18080: other work on this machine may hold that one.
    PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    export PORT
    step "sandbox throughput (issue 2)" bench/sandbox_load.sh 10s 32
else
    echo "=== sandbox throughput (issue 2): skipped, wrk is not installed"
fi
step "throughput at the limit (issue 5)" $PY bench/throughput.py  # all items, their own sizes
step "audit log's cost (issue 14)" $PY bench/audit.py --rounds 2  # 5,000 rows; default 4 rounds
step "client cost (issue 16 item 1)" $PY bench/client_cost.py  # 20,000 rows, 2 rounds
# Its default 45 s a limit: a shorter run at 20/s has a larger share of the start's 429s.
step "rate auto (issue 16 item 2)" $PY bench/rate_auto.py  # limits 20 and 200/s
shared=(bench/shared_rate.py --runs 2,3,4 --rate 200 --rows 800)  # default 3 runs of 1,500
if [ -n "$PG" ]; then
    shared+=(--store "$PG")
    command -v faketime >/dev/null && shared+=(--skew 3)
else
    echo "=== no PostgreSQL server: shared_rate runs without its PostgreSQL round"
fi
step "runs sharing a key (issue 16 item 3)" $PY "${shared[@]}"

echo
echo "=== bench/all.sh: $(($(date +%s) - started)) s in all"
