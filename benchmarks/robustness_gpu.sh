#!/usr/bin/env bash
# The robustness benchmark (gsmoe bench robustness) on a lent GPU machine: every variant
# of the synthetic generator × its seeds, quick profile, JOBS cells at once on the one GPU, each worker with
# (cores / JOBS) CPU threads. Like gpu_check.sh it installs nothing: the repository runs in place with the
# machine's own python3 / torch (scipy, scikit-learn, tqdm are in its image).
#     OUT=/some/folder JOBS=8 LIMIT=470 bash benchmarks/robustness_gpu.sh [more robustness options]
# robustness.json / .md are rewritten after every finished cell, so a run cut at LIMIT seconds still
# returns the cells it finished (marked "in progress"); run it again on the same machine to finish them
# (finished cells are not rerun: WORK keeps them).
set -u
OUT=${OUT:-benchmarks/results-gpu}
JOBS=${JOBS:-8}
LIMIT=${LIMIT:-470}
WORK=${WORK:-/tmp/gsmoe-robustness}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
THREADS=$(( $(nproc) / JOBS ))
[ "$THREADS" -ge 1 ] || THREADS=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "no CUDA-enabled torch for $PY; nothing measured" | tee "$OUT/robustness.log"
    exit 1
fi
echo "== robustness: $JOBS jobs x $THREADS threads, limit $LIMIT s, work $WORK"
timeout -k 10 "$LIMIT" "$PY" -m gsmoe_lib bench robustness --device cuda --jobs "$JOBS" --threads "$THREADS" \
    --work "$WORK" --out "$OUT" "$@" 2>&1 | tee "$OUT/robustness.log"
echo "== robustness: exit ${PIPESTATUS[0]}"
ls -l "$OUT"
