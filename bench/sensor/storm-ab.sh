#!/bin/bash
# Storms against agent configurations, taking turns: a quick way to split the sensor's cost on a
# storm into its parts (which programs, which record kinds, the agent's user space) without the
# full benchmark. Root, dockerd running, a static storm binary (bench/sensor/storm.c) and a
# busybox image.
#
#   bench/sensor/storm-ab.sh STORM N REPS 'LABEL|AGENT_BIN|AGENT_ARGS|EXTRA_YAML' ...
#
# Each repetition runs the storm with no agent (`base`), then once per configuration with that
# agent started (default config plus EXTRA_YAML, `\n` between lines) and settled for 4 s. A
# LABEL starting with `stop` SIGSTOPs the agent for the storm: only the kernel side is measured
# (the programs run and records wait in the ring buffer; nothing in user space competes).
# Prints the median storm wall and CPU time (ms) per configuration and its ratios to `base`.
#
# Environment: STORM_BIN (default /tmp/storm), IMAGE (default rampart-test/busybox:1),
# PRESLEEP (seconds the container sleeps before the storm: keeps container start-up work out).
#
# Example (issue 17's decomposition of the connect storm):
#   B=target/release/rampart; O="-o jsonl:/tmp/ab-events.jsonl"
#   bench/sensor/storm-ab.sh connect 20000 10 "stop_default|$B|$O|" \
#     "stop_nonet|$B|$O|net_events: false\n" "stop_nonet_nodns|$B|$O|net_events: false\ndns: false\n"
set -euo pipefail
storm=$1 n=$2 reps=$3
shift 3
bin=${STORM_BIN:-/tmp/storm}
image=${IMAGE:-rampart-test/busybox:1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A res
run() {
	docker run --rm -v "$bin:/storm:ro" "$image" sh -c "sleep ${PRESLEEP:-0}; /storm $storm $n" |
		awk '{printf "%.1f/%.1f", $1/1e6, $2/1e6}'
}
for _ in $(seq "$reps"); do
	res[base]+="$(run) "
	for spec in "$@"; do
		IFS='|' read -r label agent args extra <<<"$spec"
		rm -f "$work/stats.json"
		# %b: the YAML's `\n` become lines; a `%` in it is text, not a format.
		printf 'stats_file: %s\nstats_interval_secs: 1\n%b' "$work/stats.json" "$extra" >"$work/agent.yaml"
		# shellcheck disable=SC2086 # AGENT_ARGS are words
		"$agent" agent --config "$work/agent.yaml" $args >/dev/null 2>&1 &
		pid=$!
		while [ ! -f "$work/stats.json" ]; do sleep 0.2; done
		sleep 4
		case $label in stop*) kill -STOP "$pid" ;; esac
		res[$label]+="$(run) "
		kill -CONT "$pid"
		sleep 1.5
		kill "$pid"
		wait "$pid" 2>/dev/null || true
	done
done
med() { tr ' ' '\n' | grep . | cut -d/ -f"$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
b=$(echo "${res[base]}" | med 1)
bc=$(echo "${res[base]}" | med 2)
echo "base: wall $b cpu $bc ms  [${res[base]}]"
for spec in "$@"; do
	IFS='|' read -r label _ <<<"$spec"
	m=$(echo "${res[$label]}" | med 1)
	mc=$(echo "${res[$label]}" | med 2)
	echo "$label: wall $m cpu $mc; ratios $(echo "$m $b $mc $bc" | awk '{printf "%.3f | %.3f", $1/$2, $3/$4}')  [${res[$label]}]"
done
