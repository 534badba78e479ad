#!/usr/bin/env bash
# The prepared GPU measurement of issue 5: `gsmoe bench` at paper size on one CUDA device, in fp32, TF32 and
# bf16 autocast, one JSON per run under $OUT (default benchmarks/results). Meant for a lent H100 with no
# network: it installs nothing and runs the repository in place with the machine's own python3 / torch.
# Budget: about 5 minutes of commands (each run is cut at RUN_LIMIT seconds); run from the repository root:
#     OUT=/some/folder bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-benchmarks/results}
RUN_LIMIT=${RUN_LIMIT:-100}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' > "$OUT/torch.txt" 2>&1; then
    echo "no CUDA-enabled torch for $PY; nothing measured" | tee -a "$OUT/torch.txt"
    exit 1
fi
"$PY" -c 'import torch, numpy, scipy; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0), "numpy", numpy.__version__, "scipy", scipy.__version__)' | tee "$OUT/torch.txt"

bench() {  # name, then gsmoe bench options
    local name=$1; shift
    echo "== $name: $*"
    timeout "$RUN_LIMIT" "$PY" -m gsmoe_lib.bench --device cuda --json "$OUT/$name.json" "$@" 2>&1 | tee "$OUT/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]}"
}

bench small --small --steps 2 --warmup 1          # seconds: catches a broken install before the long runs
bench fp32 --steps 10 --warmup 3
bench tf32 --tf32 --steps 10 --warmup 3
bench bf16 --amp bf16 --steps 10 --warmup 3
# The quick-profile pipeline in fp32, TF32 and bf16, one seed: wall time per stage and the metrics.
echo "== pipeline"
timeout 150 "$PY" -m gsmoe_lib.precision --device cuda --precisions none,tf32,bf16 --seeds 0 \
    --runs /tmp/gsmoe-precision --json "$OUT/pipeline.json" 2>&1 | tail -60 | tee "$OUT/pipeline.log"
ls -l "$OUT"
