#!/usr/bin/env bash
# The one prepared GPU measurement, for a lent NVIDIA H100 with no network. Run from the repository
# root; results go to $OUT (at most 8 files come back from a lent machine: this writes 5):
#     OUT=/some/folder bash benchmarks/gpu_check.sh          # the GPU: about 6 minutes, at most BUDGET seconds
#     OUT=/tmp/x bash benchmarks/gpu_check.sh --small        # the same steps at tiny sizes on the CPU (a check)
#
# Set-up: none. It installs nothing and runs the repository in place with the machine's `python3` (on the lent
# machines that python holds torch, numpy, scipy, scikit-learn, pandas, tqdm and PyYAML, all the code run here
# imports; override with PYTHON=...). It reads nothing outside the working tree and writes only $OUT and
# $WORK (default /tmp/gsmoe-gpu-check; the memory stage's memory-mapped test set, 2.8 GB, lives in /tmp).
#
# What it measures, in order of priority (each step is cut at its own limit and at what is left of BUDGET):
#   1. smoke       gsmoe bench speed --small on the device: a broken install fails here in seconds
#   2. bench_fp32  UR-DMU training step (20 steps after 5 warm-up), test-set scoring (UR-DMU all crops, GS-MoE
#                  crops "each" and "mean"; features in pinned host memory, the CUDA default) with the peak device
#                  memory of each mode, and the memory stage: peak host RSS and device memory of scoring the
#                  memory-mapped test set and its longest video (6,749 snippets), one fresh process each
#   3. bench_tf32  the same step and scoring with TF32 matrix products
#   4. bench_bf16  the UR-DMU step in bf16 autocast (target <= 11 ms)
#   5. pipeline    gsmoe bench paper-pipeline: the four stages at paper-scale training settings (3000 encoder
#                  iterations, 1000 each for TGS, experts, gate, batches 64 + 64) on the `quick` synthetic data
#                  (the `full` set is about 35 GB: too long to write in a lease), TF32; target < 180 s
# Files: gpu_check.log (everything printed), bench_fp32.json, bench_tf32.json, bench_bf16.json, pipeline.json.
set -u
SMALL=0
[ "${1:-}" = "--small" ] && SMALL=1
OUT=${OUT:-benchmarks/results}
WORK=${WORK:-/tmp/gsmoe-gpu-check}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-480}  # seconds for all steps together (the lease's command limit is 600)
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TMPDIR="$WORK"  # temporary files too
LOG="$OUT/gpu_check.log"
: > "$LOG"
if [ "$SMALL" = 1 ]; then
    DEVICE=${DEVICE:-cpu}
    SIZE=(--small --threads 1)
    STEPS=(--steps 2 --warmup 1)
    PIPELINE=(--small --threads 1)
else
    DEVICE=${DEVICE:-cuda}
    SIZE=()
    STEPS=(--steps 20 --warmup 5)
    PIPELINE=(--device "$DEVICE" --precision tf32 --data-profile quick --train-profile paper)
fi
START=$SECONDS

say() { echo "$*" | tee -a "$LOG"; }

step() {  # name, limit in seconds, command...: run it within min(limit, what is left), log everything
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 20 ]; then
        say "== $name: skipped, ${left}s left of the ${BUDGET}s budget"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    say "== $name: exit $rc after $((SECONDS - t0))s$([ $rc = 124 ] && echo ' (cut at its limit)')"
}

say "gpu_check.sh $(date -u +%FT%TZ) small=$SMALL device=$DEVICE budget=${BUDGET}s in $PWD"
if [ "$SMALL" = 0 ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >> "$LOG" 2>&1
fi
if ! "$PY" -c 'import sys, torch, numpy, scipy, sklearn
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU", "numpy", numpy.__version__,
      "scipy", scipy.__version__, "threads", torch.get_num_threads())
sys.exit(0 if torch.cuda.is_available() or sys.argv[1] == "cpu" else 1)' "$DEVICE" >> "$LOG" 2>&1; then
    say "no usable torch for $PY on $DEVICE (see above); nothing measured"
    exit 1
fi

BENCH=("$PY" -m gsmoe_lib bench speed --device "$DEVICE" "${SIZE[@]}")  # `gsmoe bench speed` without the install
step smoke 90 "${BENCH[@]}" --small --stages encoder,score --steps 1 --warmup 1 --score-modes urdmu_all_crops,gsmoe
step bench_fp32 150 "${BENCH[@]}" "${STEPS[@]}" --stages encoder,score,memory \
    --score-modes urdmu_all_crops,gsmoe,gsmoe_mean --json "$OUT/bench_fp32.json"
step bench_tf32 60 "${BENCH[@]}" "${STEPS[@]}" --tf32 --stages encoder,score \
    --score-modes urdmu_all_crops,gsmoe,gsmoe_mean --json "$OUT/bench_tf32.json"
step bench_bf16 40 "${BENCH[@]}" "${STEPS[@]}" --amp bf16 --stages encoder --json "$OUT/bench_bf16.json"
step pipeline 300 "$PY" -m gsmoe_lib bench paper-pipeline "${PIPELINE[@]}" --work "$WORK/pipeline" \
    --json "$OUT/pipeline.json"

# The headline figures, one line each, from the JSON files.
"$PY" - "$OUT" >> "$LOG" 2>&1 <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def read(name):
    p = out / name
    return json.loads(p.read_text()) if p.is_file() else None
for name in ("bench_fp32.json", "bench_tf32.json", "bench_bf16.json"):
    rec = read(name)
    if rec is None:
        print(f"{name}: missing"); continue
    r = rec["results"]
    parts = [f"{name}:"]
    if "encoder" in r:
        parts.append(f"UR-DMU step {r['encoder']['step_s'] * 1000:.1f} ms (min {r['encoder']['step_s_min'] * 1000:.1f})")
    for mode in ("urdmu_all_crops", "gsmoe", "gsmoe_mean"):
        m = r.get(f"score_{mode}")
        if m:
            dev = m.get("device_peak_mb")
            parts.append(f"{mode} {m['total_s']:.2f} s" + ("" if dev is None else f" ({dev:.0f} MB device)"))
    for key, m in r.items():
        if key.startswith("memory_"):
            dev = m.get("device_peak_mb")
            parts.append(f"{key[7:]} host +{m['beyond_mb']:.0f} MB" + ("" if dev is None else f" device {dev:.0f} MB"))
    print("  ".join(parts))
pipe = read("pipeline.json")
if pipe:
    stages = ", ".join(f"{k} {v['seconds']:.1f} s AUC {v['auc']:.2f}" for k, v in pipe["stages"].items()
                       if k in ("encoder", "tgs", "experts", "gate"))
    print(f"pipeline: end to end {pipe['end_to_end_s']:.1f} s (target {pipe['target_s']:.0f}): {stages}")
else:
    print("pipeline.json: missing")
EOF
tail -n 8 "$LOG"
say "== done in $((SECONDS - START))s; files:"
ls -l "$OUT" | tee -a "$LOG"
