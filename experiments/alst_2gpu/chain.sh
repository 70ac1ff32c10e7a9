#!/usr/bin/env bash
# Runs longer than one 10-minute device call: `start` launches bench.sh in the background (it survives the call
# while the machine stays held) and samples host memory; `wait N` waits up to N s for it, then packs every log and
# metrics file into $OUT/chain.tgz and prints the table so far. Chain the calls back to back (the machine is
# released after ~30 s idle).
#   bash experiments/alst_2gpu/chain.sh start "<name>|<command>" ...
#   bash experiments/alst_2gpu/chain.sh wait 580
set -u
mode=$1; shift
C=/tmp/chain; mkdir -p $C
case $mode in
  start)
    printf '%s\n' "$@" > $C/specs
    # the sampler in its own session too: in session 6 one started as a plain background job stopped when its call ended
    setsid nohup bash -c 'while true; do echo "$(date +%T) $(free -g | awk '"'"'/Mem:/ {print "host_used_gib", $3, "available", $7}'"'"')"; sleep 10; done' \
      > $C/hostmem.txt 2>&1 < /dev/null &
    echo $! > $C/sampler.pid
    # run from a copy: a later device call that carries this directory again replaces it, and the runs would lose
    # their working directory (the peer's "../.device/..." then resolves through the /tmp/.device link)
    rm -rf /tmp/chainsrc && cp -a "$PWD" /tmp/chainsrc && [ -d ../.device ] && ln -sfn "$(cd .. && pwd)/.device" /tmp/.device
    # Session 5: bench.sh, started here directly, did not outlive the call, while the `timeout` it had started (and
    # that run) did. So bench.sh now runs under a `timeout` of its own, one level below the process started here,
    # and says it is done with a marker file.
    rm -f $C/bench.done $C/bench.pid
    here=$PWD; (cd /tmp/chainsrc && export PYTHONPATH=${PYTHONPATH:+${PYTHONPATH//$here//tmp/chainsrc}} && OUT=$C setsid nohup bash -c \
      'timeout 10800 bash experiments/alst_2gpu/bench.sh "$@" & echo $! > '"$C"'/bench.pid; wait' _ "$@" \
      > $C/chain.out 2>&1 < /dev/null &)
    while [ ! -s $C/bench.pid ]; do sleep 0.2; done
    echo "started bench.sh under timeout $(cat $C/bench.pid)" ;;
  wait)
    end=$(( $(date +%s) + $1 ))
    running() { [ ! -f $C/bench.done ] && kill -0 "$(cat $C/bench.pid)" 2>/dev/null; }
    while running && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
    if running; then echo "still running"
    else
      [ -f $C/bench.done ] && echo "finished" || echo "bench.sh is gone without finishing: see $C/chain.out"
      kill "$(cat $C/sampler.pid)" 2>/dev/null
    fi
    mapfile -t specs < $C/specs
    python3 experiments/alst_2gpu/table.py /tmp/bench "${specs[@]}" > $C/table_now.md 2>&1
    tar czf "$OUT/chain.tgz" -C / tmp/chain $(cd / && ls -d tmp/bench/*.log tmp/bench/*/metrics.jsonl tmp/bench/*/result.json 2>/dev/null)
    tail -5 $C/hostmem.txt; grep -h '^step \|^=== ' /tmp/bench/*.log $C/bench.log 2>/dev/null | cut -c1-400 | tail -20
    cat $C/table_now.md ;;
esac
