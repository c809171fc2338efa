#!/usr/bin/env bash
# The GPU measurements as one prepared command, for a session that is lent a CUDA machine.
#
#   OUT=results DATA=path/to/magnetic-tile bash benchmarks/gpu_checks.sh
#
# 1. benchmarks/bench_image.py --device cuda: inference ms/image at batch 32 and training images/s at 256^2,
#    eager fp32 against channels_last + bf16 + torch.compile in the same run -> $OUT/image_cuda.json.
# 2. manifold-ae benchmark on a full-size synthetic MVTec-like category at 256^2 (make-synthetic: 300 training,
#    60 good and 100 defective test images of `weave`), the mvtec preset for RUNNER_STEPS steps (default 1000):
#    time to result, training images/s and peak GPU memory -> $OUT/benchmark.json.
# 3. manifold-ae compare --preset magnetic_tile_gpu: the self-supervised model first, then the Gaussian DAE,
#    the plain AE and PCA, each written to $OUT as soon as it is scored (compare_<method>.json; a killed call
#    keeps what finished). Test and synthetic-validation tables in $OUT/results.md and $OUT/compare.json once
#    all four are done (the per-method files are then removed: a device call returns at most 8 files).
# Run folders (checkpoints) go to $RUNS (default /tmp/gpu_checks_runs), outside $OUT.
# Every step appends to $OUT/log.txt. GPU_STEPS overrides train.steps of step 2 (default: the preset's 8000).
# SMOKE=1 runs the same script on a CPU in a few seconds (tiny images, 2 steps): the test suite does that.
set -euo pipefail
OUT=${OUT:?set OUT to the folder for the results}
DATA=${DATA:-../shared/data/magnetic-tile}
RUNS=${RUNS:-/tmp/gpu_checks_runs}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log() { echo "[$(date -u +%T)] $*" | tee -a "$OUT/log.txt"; }

if [ "${SMOKE:-0}" = 1 ]; then
  bench=(--device cpu --quick --threads 1 --size 32 --width 4 --depth 2 --variants eager_fp32)
  train=(--train.device=cpu --train.precision=float32 --train.channels_last=false --train.compile=false
         --train.steps=2 --train.batch_size=2 --train.warmup=1 --data.image_size=32 --data.num_workers=0
         --model.width=4 --model.depth=2 --model.dilations=1,2 --score.topk=5 --score.batch_size=8)
  runner_data=(--image-size 32 --n-train 12 --n-test-good 4 --n-test-defect 4)
  runner=(--data.image_size=32)
  device=cpu
else
  bench=(--device cuda)
  train=(--train.steps="${GPU_STEPS:-8000}")
  runner_data=(--image-size 256 --n-train 300 --n-test-good 60 --n-test-defect 100)
  runner=(--data.image_size=256 --train.steps="${RUNNER_STEPS:-1000}")
  device=cuda
  $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
    | tee -a "$OUT/log.txt"
fi

log "1/3 bench_image ${bench[*]}"
$PY benchmarks/bench_image.py "${bench[@]}" --results-dir "$OUT" --doc "$RUNS/benchmarks-image.md" 2>&1 \
  | tee -a "$OUT/log.txt"

log "2/3 benchmark runner on a synthetic MVTec-like category (${runner_data[*]})"
$PY -m manifold_ae.commands.cli make-synthetic --out "$RUNS/synthetic" --categories weave --quiet --overwrite \
  "${runner_data[@]}" 2>&1 | tee -a "$OUT/log.txt"
start=$(date +%s)
$PY -m manifold_ae.commands.cli benchmark --preset mvtec --data.dataset=synthetic --data.root="$RUNS/synthetic" \
  --categories weave --seeds 0 --out "$RUNS/benchmark" --device "$device" --no-progress "${train[@]}" \
  "${runner[@]}" 2>&1 | tee -a "$OUT/log.txt"
log "2/3 benchmark runner: $(( $(date +%s) - start )) s to the result"
cp "$RUNS/benchmark/benchmark.json" "$OUT/"

for method in selfsupervised dae ae pca; do
  log "3/3 compare magnetic_tile_gpu: $method"
  $PY -m manifold_ae.commands.compare --preset magnetic_tile_gpu --out "$RUNS" --methods "$method" --device "$device" \
    --no-progress --data.root="$DATA" "${train[@]}" 2>&1 | tee -a "$OUT/log.txt"
  cp "$RUNS/compare_$method.json" "$OUT/"
done
log "3/3 compare magnetic_tile_gpu: all methods (scoring only; the networks are trained)"
$PY -m manifold_ae.commands.compare --preset magnetic_tile_gpu --out "$RUNS" --device "$device" --no-progress \
  --data.root="$DATA" "${train[@]}" 2>&1 | tee -a "$OUT/log.txt"
cp "$RUNS/results.md" "$RUNS/compare.json" "$OUT/"
rm -f "$OUT"/compare_*.json
log "done"
