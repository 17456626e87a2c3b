#!/usr/bin/env bash
# Benchmark: issue 10's overload goal on a budget of two CPUs with the simulators off them.
# linegate's three workers are pinned to two CPUs of distinct cores (bench_late_frames.py --cpus),
# the benchmark process and the PLC simulator run on the other CPUs (taskset), and the engine alone
# is timed on the same two CPUs before and after each run (bench_parallel_floor.py). Needs a
# machine with 4+ CPUs and engines/resnet18/resnet18.onnx (export_resnet18.py). Prints numbers.
#     PY=.venv/bin/python bash tests/bench/bench_cpu_budget.sh [fps] [frames]
set -u
PY=${PY:-python3}
FPS=${1:-200}
FRAMES=${2:-3000}
read -r PAIR REST < <("$PY" - <<'PYCODE'
import os
cpus = sorted(os.sched_getaffinity(0))
sib = lambda c: open(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list").read().strip()
a = cpus[0]
b = next(c for c in cpus[1:] if sib(c) != sib(a))
rest = [c for c in cpus if c not in (a, b) and sib(c) not in (sib(a), sib(b))]
print(f"{a},{b}", ",".join(map(str, rest)))
PYCODE
)
echo "linegate on CPUs $PAIR; the simulators and the benchmark on $REST; $(date -u +%H:%M) UTC"
for round in 1 2; do
  taskset -c "$PAIR" "$PY" tests/bench/bench_parallel_floor.py --parallel 1,2 --seconds 3 --rounds 1 2>&1 | grep round
  for parallel in auto 1; do
    taskset -c "$REST" "$PY" tests/bench/bench_late_frames.py --cpus "$PAIR" --fps "$FPS" --frames "$FRAMES" \
      --rounds 1 --parallel "$parallel" 2>&1 | grep round | cut -c1-260
  done
done
taskset -c "$PAIR" "$PY" tests/bench/bench_parallel_floor.py --parallel 1,2 --seconds 3 --rounds 1 2>&1 | grep round
