#!/usr/bin/env bash
# Continue the postfilter's training on a lent GPU machine; docs/gpu-training.md says how to
# prepare the call (a data shard and three wheels in .gpu/, carried) and what to do after.
#
# Runs there, in the repository root: no build, no install beyond the carried wheels. Warm
# starts from weights/postfilter.pt, makes (x, y) pairs on the fly with the codec of
# weights/codec.pt at random bitrates and trains for TRAIN_SECONDS in all (a short first run
# measures the pace, so the cosine learning-rate schedule ends when the time does). Writes to
# $OUT the run's checkpoint (~3.5 MB, what `flowdec.train.export postfilter` reads), its EMA
# weights in float16 (what weights/ keeps), its logs and its config.
#
# Settings (environment): TRAIN_SECONDS (default 420), BATCH (64), DEVICE (cuda; cpu for a
# dry run here), GPU_DIR (.gpu), PROBE_STEPS (200), STEPS (the second run's steps, with no time
# limit; default: as many as fit, by flowdec.train.pace).
set -euo pipefail

TRAIN_SECONDS=${TRAIN_SECONDS:-420}
BATCH=${BATCH:-64}
DEVICE=${DEVICE:-cuda}
GPU_DIR=${GPU_DIR:-.gpu}
PROBE_STEPS=${PROBE_STEPS:-200}
: "${OUT:?OUT must name the folder for the results (the device tool sets it)}"
[ -f "$GPU_DIR/shard/index.json" ] || { echo "error: no shard in $GPU_DIR/shard: see docs/gpu-training.md" >&2; exit 2; }

if compgen -G "$GPU_DIR/whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/flowdec-site "$GPU_DIR"/whl/*.whl
  export PYTHONPATH=/tmp/flowdec-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/python:${PYTHONPATH:-} PYTHONUNBUFFERED=1
RUN=$(mktemp -d)/run
START=$SECONDS
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; fi

train() {  # extra arguments → one training process; its output is appended to the log
  python3 -m flowdec.train.train_postfilter --codec-run weights/codec.pt \
    --cache "$GPU_DIR/shard" --init weights/postfilter.pt --run-dir "$RUN" --device "$DEVICE" \
    --batch "$BATCH" "$@" 2>&1 | tr '\r' '\n' | sed '/^ *[0-9]*%|/d' | tee -a "$OUT/train.log"
}

# 1. a short run at a provisional schedule length: its pace sets the real one
FIRST=$(python3 -c "import torch; print(torch.load('weights/postfilter.pt', weights_only=False)['step'])")
train --steps "$PROBE_STEPS" --total-steps $((FIRST + 100000)) --validate-every 100000000
PROBE_S=$((SECONDS - START))
# the second run's steps, from the probe's pace (its log: steps and wall seconds every 25
# steps, start-up excluded) and the time left; exits 3 when none is left
PLAN=$(python3 -m flowdec.train.pace --train-seconds "$TRAIN_SECONDS" --probe-seconds \
  "$PROBE_S" --probe-steps "$PROBE_STEPS" --log "$RUN/train.csv" ${STEPS:+--steps "$STEPS"}) \
  || exit 3
read -r STEPS LEFT_S RATE MAX_MIN <<< "$PLAN"
LIMIT=()
[ "$MAX_MIN" = - ] || LIMIT=(--max-minutes "$MAX_MIN")
echo "probe: $PROBE_STEPS steps in ${PROBE_S} s with start-up, $RATE steps/s; $STEPS more" \
     "steps in ${LEFT_S} s" | tee -a "$OUT/train.log"

# 2. the rest, resumed from the probe's checkpoint, the schedule ending at the last step
TOTAL=$((FIRST + PROBE_STEPS + STEPS))
train --steps "$STEPS" --total-steps "$TOTAL" --validate-every $(((STEPS + 3) / 4)) \
  "${LIMIT[@]}" --save-weights "$OUT/postfilter.pt"
for f in checkpoint.pt train.csv valid.csv config.json; do  # train.csv: a row every 25 steps
  if [ -f "$RUN/$f" ]; then cp "$RUN/$f" "$OUT/"; fi
done
echo "done in $((SECONDS - START)) s: $OUT/postfilter.pt" | tee -a "$OUT/train.log"
