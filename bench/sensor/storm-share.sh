#!/bin/bash
# What share of a storm's own CPU samples is the sensor's: a perf profile of one storm in a
# container, with no agent (`base`) or with the agent running in a given configuration, and the
# share of the storm process's samples whose call chain holds a BPF frame. A share within one run
# is not moved by the run-to-run noise of a virtual machine (storms here vary by 15-30% from run
# to run, more than the few percent being measured); see docs/benchmarks.md, eighth session.
# Root, dockerd, perf, a static storm binary (bench/sensor/storm.c) and a busybox image.
#
#   bench/sensor/storm-share.sh LABEL AGENT_BIN|- [EXTRA_YAML]
#
# LABEL names the run; AGENT_BIN `-` runs the storm with no agent. EXTRA_YAML is added to the
# agent's default configuration (`\n` between lines), e.g. 'net_events: false\n'.
# Environment: STORM (connect), N (60000), STORM_BIN (/tmp/storm), IMAGE
# (rampart-test/busybox:1), FREQ (perf sampling rate, 4999).
#
# Columns: bpf = any BPF frame (programs, bpf_trace_run*, __cgroup_bpf_run_filter_skb,
# __bpf_prog_run*, ring buffer helpers); sys_exit path = under syscall_exit_work (the tracepoint
# slow path and everything the sys_exit program does); cgroup_skb = under
# __cgroup_bpf_run_filter_skb; rp_sys_exit = under the sensor's sys_exit program.
set -euo pipefail
label=$1 agent=$2 extra=${3:-}
storm=${STORM:-connect} n=${N:-60000}
bin=${STORM_BIN:-/tmp/storm}
image=${IMAGE:-rampart-test/busybox:1}
work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
if [ "$agent" != - ]; then
	# %b: the YAML's `\n` become lines; a `%` in it is text, not a format.
	printf 'stats_file: %s\nstats_interval_secs: 1\n%b' "$work/stats.json" "$extra" >"$work/agent.yaml"
	"$agent" agent --config "$work/agent.yaml" -o "jsonl:$work/events.jsonl" >/dev/null 2>&1 &
	pid=$!
	while [ ! -f "$work/stats.json" ]; do sleep 0.2; done
	sleep 4 # settled: past the start-up inventories
fi
perf record -q -F "${FREQ:-4999}" -a -g -o "$work/perf.data" -- \
	docker run --rm -v "$bin:/storm:ro" "$image" /storm "$storm" "$n" >/dev/null 2>&1
# One line per sample: the call chain's symbols, leaf first.
perf script -i "$work/perf.data" --comm storm -F ip,sym 2>/dev/null |
	awk 'BEGIN { RS = "" } { gsub(/\n[ \t]*[0-9a-f]+ /, " "); sub(/^[ \t]*[0-9a-f]+ /, ""); print }' |
	awk -v l="$label" '
		{ n++ }
		/bpf_prog_|bpf_trace_run|__cgroup_bpf_run|__bpf_prog_run|bpf_ringbuf/ { b++ }
		/syscall_exit_work/ { t++ }
		/__cgroup_bpf_run_filter_skb/ { c++ }
		/rp_sys_exit/ { s++ }
		END {
			if (n == 0) { print l ": no samples of the storm process"; exit 1 }
			printf "%-12s samples %6d  bpf %5.1f%%  sys_exit path %5.1f%%  cgroup_skb %5.1f%%  rp_sys_exit %5.1f%%\n",
				l, n, 100 * b / n, 100 * t / n, 100 * c / n, 100 * s / n
		}'
