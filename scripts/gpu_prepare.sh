#!/usr/bin/env bash
# Prepare (or undo) a call of scripts/gpu_train_postfilter.sh on a lent GPU machine; see
# docs/gpu-training.md. Run here, in the repository root:
#
#   CACHE=/data/cache bash scripts/gpu_prepare.sh          # .gpu/: shard + wheels; ONNX set aside
#   bash scripts/gpu_prepare.sh --restore                  # afterwards: the index as it was
#
# A call takes the working tree (tracked files and untracked ones git does not ignore) plus
# carried paths, 64 MiB in all. Training reads neither encoder.onnx nor decoder.onnx (40 MB),
# so they leave git's index for the call (`git rm --cached`, listed in .git/info/exclude; the
# files stay on disk) and --restore puts them back. The shard gets the rest of the room.
# Nothing is committed; do not commit while they are set aside.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

LIMIT=$((64 * 1024 * 1024))
MARGIN=${MARGIN:-1500000}  # bytes kept free (files the session adds, rounding)
ASIDE=(python/flowdec/models/flowdec-75/encoder.onnx python/flowdec/models/flowdec-75/decoder.onnx)
EXCLUDE=.git/info/exclude

BEGIN="# flowdec gpu_prepare.sh: begin"
END="# flowdec gpu_prepare.sh: end"

if [ "${1:-}" = "--restore" ]; then
  git reset -q HEAD -- "${ASIDE[@]}"
  [ -f "$EXCLUDE" ] && sed -i "/^$BEGIN\$/,/^$END\$/d" "$EXCLUDE"
  git status --short
  echo "restored: ${ASIDE[*]} are tracked again (.gpu/ stays, ignored; delete it when done)"
  exit 0
fi

: "${CACHE:?CACHE must name the audio cache folder (flowdec.train.data)}"
[ -f "$CACHE/index.json" ] || { echo "error: $CACHE is not an audio cache (no index.json)" >&2; exit 2; }
for f in "${ASIDE[@]}"; do
  [ -f "$f" ] || { echo "error: $f is missing: run from a complete checkout" >&2; exit 2; }
done

# 1. the ONNX files out of the index and ignored (.gitignore already ignores .gpu/)
if ! grep -q -x -F "$BEGIN" "$EXCLUDE" 2>/dev/null; then
  { echo "$BEGIN"; printf '/%s\n' "${ASIDE[@]}"; echo "$END"; } >>"$EXCLUDE"
fi
git rm -q --cached --ignore-unmatch "${ASIDE[@]}"

# 2. wheels the GPU image lacks (soundfile reads the shard's FLAC), for its Python 3.12
# (WHEELS=0: skip the download, for a test without the package index)
mkdir -p .gpu/whl
if [ "${WHEELS:-1}" != 0 ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/whl soundfile==0.13.1 cffi pycparser
fi

# 3. the shard fills what is left
TREE=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null || true) \
        | awk '{s += $1} END {print s + 0}')
WHEEL_BYTES=$( (find .gpu/whl -name '*.whl' -printf '%s\n'; echo 0) | awk '{s += $1} END {print s}')
ROOM=$((LIMIT - TREE - WHEEL_BYTES - MARGIN))
[ "$ROOM" -gt 2000000 ] || { echo "error: only $ROOM bytes left for the shard" >&2; exit 3; }
MB=$(python3 -c "print(f'{$ROOM / 1e6:.1f}')")
echo "tree ${TREE} B + wheels ${WHEEL_BYTES} B: ${MB} MB left for the shard"
rm -rf .gpu/shard
PYTHONPATH=python${PYTHONPATH:+:$PYTHONPATH} python3 -m flowdec.train.shard --cache "$CACHE" \
  --out .gpu/shard --megabytes "$MB"
echo "ready: run(command=\"bash scripts/gpu_train_postfilter.sh\", carry=[\".gpu\"], timeout_s=560)"
echo "then: bash scripts/gpu_prepare.sh --restore"
