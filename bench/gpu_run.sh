#!/usr/bin/env bash
# The whole GPU benchmark in one command, for a bare CUDA machine with PyTorch (no network), in ≤ 10 minutes.
#
#   OUT=/some/folder bench/gpu_run.sh     # $OUT/gpu.{json,md} (hvl bench), score-cli.txt, pytest.txt, log.txt, env.txt
#
# What it measures (defaults: ViT-B/16 and DenseNet121 with random weights, n = 2):
#   1. tests/tools/test_score_gpu_paths.py on the GPU (nvjpeg views vs PIL, a training step with no host
#      sync under torch.cuda.set_sync_debug_mode("error"), scores on CUDA vs predict), when pytest is there;
#   2. hvl bench --device cuda: latency, batched throughput, peak memory (allocated and reserved), cached vs
#      end-to-end training, and the hvl score measures: images/s from JPEG files to scores.csv against the
#      bare encoder on the same crops, JPEG decode on the device (nvjpeg) vs PIL workers with the score
#      difference, bf16 autocast's cosine to fp32, the cached trainer eager vs compile_step=True;
#   3. the hvl score command itself on BENCH_SCORE_IMAGES JPEG files (model loading included): score-cli.txt.
# Needs: python3 with torch (CUDA), torchvision, PIL, numpy, safetensors, huggingface_hub, psutil, tqdm,
# matplotlib. What such a machine lacks travels as wheels in .whl/ (open_clip_torch, ftfy, wcwidth; timm in
# .whl/timm/, installed only when the machine's timm is older than open_clip needs), and the medmnist weights
# as the converted cache weights/medmnist-densenet121.safetensors (made here by loading the backbone once).
# BENCH_SECONDS bounds the whole run (default 540). Each configuration's numbers are written as soon as it
# finishes. For a dry run on a CPU:
#   BENCH_DEVICE=cpu BENCH_BACKBONES=tiny-clip-random BENCH_ARGS=--quick BENCH_SCORE_IMAGES=16 \
#   BENCH_SCORE_BACKBONE=tiny-clip-random PY=.venv/bin/python OUT=/tmp/x bench/gpu_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu}"
BUDGET="${BENCH_SECONDS:-540}"
DEVICE="${BENCH_DEVICE:-cuda}"
BACKBONES="${BENCH_BACKBONES:-clip-vit-b16-random medmnist-densenet121}"
NS="${BENCH_NS:-2}"
SCORE_BACKBONE="${BENCH_SCORE_BACKBONE:-clip-vit-b16-random}"
SCORE_IMAGES="${BENCH_SCORE_IMAGES:-2048}"
EXTRA="${BENCH_ARGS:-}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="${PY:-python3}"

if ! $PY -c "import open_clip" >/dev/null 2>&1; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
if ! $PY -c "import sys, timm; v = tuple(int(x) for x in timm.__version__.split('.')[:3]); sys.exit(v < (1, 0, 17))" >/dev/null 2>&1; then
  if ls .whl/timm/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/timm/*.whl || exit 3
    case ":${PYTHONPATH:-}:" in *:/tmp/site:*) ;; *) export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}";; esac
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  nvidia-smi || true
  $PY - <<'EOF'
import sys, torch, torchvision, open_clip, timm, huggingface_hub, numpy, PIL
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| torchvision", torchvision.__version__, "| open_clip", open_clip.__version__, "| timm", timm.__version__,
      "| hf_hub", huggingface_hub.__version__, "| numpy", numpy.__version__, "| PIL", PIL.__version__)
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")
EOF
  ls -la weights/ 2>&1
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

start=$SECONDS
if $PY -c "import pytest" >/dev/null 2>&1; then
  timeout 90 $PY -m pytest -q -p no:cacheprovider tests/tools/test_score_gpu_paths.py 2>&1 | tail -n 15 | tee "$OUT/pytest.txt"
else
  echo "pytest not installed: GPU path tests skipped" | tee "$OUT/pytest.txt"
fi

# shellcheck disable=SC2086  # word splitting of the lists is wanted
timeout "$((BUDGET - (SECONDS - start) - 100))" $PY -m hvl_tools.cli bench --device "$DEVICE" \
  --backbone $BACKBONES --n $NS --out "$OUT" --name gpu $EXTRA 2>&1 | tee "$OUT/log.txt"
status=${PIPESTATUS[0]}
echo "bench: exit $status after $((SECONDS - start)) s" | tee -a "$OUT/log.txt"

left=$((BUDGET - (SECONDS - start)))
if [ "$left" -gt 30 ]; then
  ARCHIVE="$(mktemp -d)"
  $PY -c "import sys; from pathlib import Path; from hvl_tools.bench.timing import synthetic_images; \
from hvl_tools.bench.score import archive_of; \
archive_of(Path(sys.argv[1]) / 'a', synthetic_images(Path(sys.argv[1]) / 'src', 16, (640, 480)), int(sys.argv[2]))" \
    "$ARCHIVE" "$SCORE_IMAGES"
  t0=$SECONDS
  timeout "$left" $PY -m hvl_tools.cli score "$ARCHIVE/a" --out "$ARCHIVE/out" --backbone "$SCORE_BACKBONE" \
    --device "$DEVICE" --batch-size 32 --no-progress 2>&1 | tail -n 3 | tee "$OUT/score-cli.txt"
  echo "hvl score on $SCORE_IMAGES JPEGs (640x480): $((SECONDS - t0)) s wall, model loading included" | tee -a "$OUT/score-cli.txt"
  $PY -c "import json, sys; s = json.load(open(sys.argv[1])); print(json.dumps({k: s[k] for k in ('scored', 'errors', 'run')}))" \
    "$ARCHIVE/out/summary.json" 2>&1 | tee -a "$OUT/score-cli.txt"
  rm -rf "$ARCHIVE"
else
  echo "hvl score CLI run skipped: $left s left" | tee -a "$OUT/log.txt"
fi
exit "$status"
