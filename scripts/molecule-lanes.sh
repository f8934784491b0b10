#!/usr/bin/env bash
# make molecule: `molecule test` for every scenario, in lanes that run side by side, each lane one
# scenario after the other. A scenario spends most of its time waiting on its hosts (systemd, pip,
# the tests' own waits), so on this 2-core machine two lanes take about the time of the longer one.
# No two scenarios share anything on the controller that either writes: their hosts, networks and
# Molecule directories are their own, and the one that compiles uWSGI on its hosts (default) uses no
# wheel cache, the one that fills a cache (offline) its own; the others install pyuwsgi's wheel.
#
#   bash scripts/molecule-lanes.sh "lifecycle cluster" "validation default"
#
# Every line a scenario prints reaches standard output at once, prefixed with the scenario's name;
# a summary (each scenario's outcome and minutes) ends the output. A lane stops at its first failed
# scenario; the exit status is 1 if any scenario failed.
set -uo pipefail

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT

run_lane() {
    local scenario start status
    for scenario in $1; do
        start=$(date +%s)
        molecule test --scenario-name "$scenario" 2>&1 | sed -u "s/^/[$scenario] /"
        status=$?
        echo "$scenario $status $(( $(date +%s) - start ))" >>"$summary"
        [ "$status" -eq 0 ] || return 1
    done
}

# Each lane in a process group of its own (set -m), so that an interrupt or a TERM stops the lanes
# whole rather than leaving them to run unattended.
set -m
pids=()
stop_lanes() {
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
    exit 130
}
trap stop_lanes INT TERM
for lane in "$@"; do
    run_lane "$lane" &
    pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done

echo "=== molecule, scenario by scenario (lanes side by side: $(printf "[%s] " "$@"))"
for scenario in $*; do
    read -r _ status seconds < <(grep "^$scenario " "$summary") || { echo "$scenario not run"; continue; }
    awk -v name="$scenario" -v status="$status" -v s="$seconds" \
        'BEGIN { printf "%-12s %-6s %5.1f min\n", name, (status == 0 ? "passed" : "FAILED"), s / 60 }'
done
exit "$failed"
