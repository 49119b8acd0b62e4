#!/bin/sh
# The service benchmarks of two checkouts side by side, each command run on one and then the
# other, so a drift of the machine's speed hits both alike:
#
#   sh benchmarks/service_side_by_side.sh BEFORE_CHECKOUT AFTER_CHECKOUT OUT_BEFORE OUT_AFTER [NAME ...]
#
# With NAMEs (the first word of a `both` line below, e.g. ingest_live_none), only those commands
# run: a long comparison split into several shorter runs. With ORDER=after-first in the
# environment each command runs on the after checkout first (a repeat in the other order).
# Each checkout runs its own benchmark scripts on its own grokwatch (PYTHONPATH=.). Then
# `python benchmarks/service_tables.py OUT_BEFORE OUT_AFTER` prints the tables side by side.
set -eu
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd)
mkdir -p "$3" "$4"
out_before=$(cd "$3" && pwd); out_after=$(cd "$4" && pwd)
shift 4
only=" $* "

cpu_jiffies() {  # busy and total jiffies of all cores so far
    awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat
}

both() {  # both NAME ARGS...: run benchmarks/ARGS in each checkout, JSON to OUT/NAME.json
    name=$1; shift
    script=$1; shift
    case "$only" in "  " | *" $name "*) ;; *) return 0 ;; esac
    sides="before after"; [ "${ORDER:-}" = after-first ] && sides="after before"
    for side in $sides; do
        if [ $side = before ]; then dir=$before; out=$out_before; else dir=$after; out=$out_after; fi
        echo "== $side: $script $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
        start=$(cpu_jiffies)
        (cd "$dir" && PYTHONPATH=. python "benchmarks/$script" "$@" --json "$out/$name.json")
        busy=$(echo "$start $(cpu_jiffies) $(nproc)" | awk '{printf "%.2f", ($3-$1)/($4-$2)*$5}')
        echo "   done $(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg); the machine's" \
            "cores busy over the command (every process, the benchmark's included): $busy"
    done
}

both ingest_throughput_none_2replicas service_ingest.py --scenario throughput --duration 10 --batch 500 --replicas 2 --forecaster none
both ingest_throughput_default_2replicas service_ingest.py --scenario throughput --duration 10 --batch 500 --replicas 2 --forecaster default
both ingest_live_none service_ingest.py --scenario live --duration 15 --report-points 10 --runs 1000 --forecaster none
both ingest_live_default_2replicas service_ingest.py --scenario live --duration 15 --report-points 10 --runs 1000 --replicas 2 --forecaster default
both metrics_none service_metrics.py --series 10000 --forecaster none
both metrics_default service_metrics.py --series 10000 --forecaster default
both memory_none service_memory.py --runs 1000 --points 100 --forecaster none
both memory_default service_memory.py --runs 1000 --points 100 --forecaster default
# in-process CPU per point (parse, store, judge, render, then the forecasts): one core's work,
# so it depends least on how busy the machine is
both runtable service_runtable.py --runs 32 --batch 10 500 --group 1 --rounds 10 --forecaster none default --mem-points
