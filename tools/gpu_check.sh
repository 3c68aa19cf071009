#!/usr/bin/env bash
# make gpu-check: what one GPU machine should tell us, in one call of under 10 minutes.
#   1. training images/s of every registered architecture at 512 px, fp32 against bf16 +
#      channels_last, the largest batch that fits, and the share of time the GPU waits for the
#      loader with 4 and 8 workers (bench.speed.gpu);
#   2. a 2-cycle run of the whole pipeline at 512 px on synthetic data (kfp.local), which must end
#      with a submission and a summary.
# Figures go to $OUT (default build/gpu-check): speed.json, speed.txt, smoke.txt, nvidia-smi.txt.
set -euo pipefail
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,8p' "$0" | cut -c3-
    echo "Settings (environment): PY, OUT, ARCHS (default all), SIZE (default 512)."
    exit 0
fi
PY=${PY:-.venv/bin/python}
OUT=${OUT:-build/gpu-check}
ARCHS=${ARCHS:-all}
SIZE=${SIZE:-512}
mkdir -p "$OUT"
(nvidia-smi || echo "no nvidia-smi") > "$OUT/nvidia-smi.txt" 2>&1
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: no CUDA device')"

start=$(date +%s)
timeout 390 "$PY" -m bench.speed.gpu --archs "$ARCHS" --sizes "$SIZE" --steps 10 --workers 4,8 \
    --no-compile --json "$OUT/speed.json" | tee "$OUT/speed.txt"
echo "speed: $(( $(date +%s) - start )) s"

start=$(date +%s)
"$PY" -m protloc.synthetic --out "$OUT/data" --n-train 256 --n-test 32 --size "$SIZE" --seed 0 \
    --temper 0.8 --workers 8
timeout 180 "$PY" pipeline.py local --data-root "$OUT/data" --root "$OUT/runs" \
    --schedule "$SIZE:32:1,$SIZE:32:1" 2>&1 | tee "$OUT/smoke.txt" | tail -40
grep -q "^Submission: " "$OUT/smoke.txt"
echo "smoke run: $(( $(date +%s) - start )) s; figures in $OUT"
