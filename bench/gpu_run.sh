#!/usr/bin/env bash
# The whole GPU benchmark in one command, for a bare CUDA machine with PyTorch (no network).
#
#   OUT=/some/folder bench/gpu_run.sh            # results: $OUT/gpu.{json,md}, gpu-compile.{json,md}, log.txt, env.txt
#
# Needs: python3 with torch (CUDA), torchvision, PIL, numpy, safetensors, huggingface_hub, psutil, tqdm.
# What such a machine lacks travels as wheels in .whl/ (open_clip_torch, ftfy, wcwidth; timm in .whl/timm/,
# installed only when the machine's timm is older than open_clip needs), and the medmnist weights as the
# converted cache weights/medmnist-densenet121.safetensors (made here by loading the backbone once).
# BENCH_SECONDS bounds the whole run (default 400): the main run gets most of it, the torch.compile
# probe what is left. Each configuration's numbers are written as soon as it finishes. For a dry run on a
# CPU: BENCH_DEVICE=cpu BENCH_BACKBONES=tiny-clip-random BENCH_NS=2 BENCH_COMPILE_BACKBONE=tiny-clip-random BENCH_ARGS=--quick
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu}"
BUDGET="${BENCH_SECONDS:-400}"
DEVICE="${BENCH_DEVICE:-cuda}"
BACKBONES="${BENCH_BACKBONES:-clip-vit-b16-random medmnist-densenet121}"
NS="${BENCH_NS:-1 2 3}"
COMPILE_BACKBONE="${BENCH_COMPILE_BACKBONE:-clip-vit-b16-random}"
EXTRA="${BENCH_ARGS:-}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=python3

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
# shellcheck disable=SC2086  # word splitting of the lists is wanted
timeout "$((BUDGET * 3 / 4))" $PY -m hvl_tools.cli bench --device "$DEVICE" \
  --backbone $BACKBONES --n $NS --out "$OUT" --name gpu $EXTRA 2>&1 | tee "$OUT/log.txt"
status=${PIPESTATUS[0]}
echo "main run: exit $status after $((SECONDS - start)) s" | tee -a "$OUT/log.txt"

left=$((BUDGET - (SECONDS - start)))
if [ "$left" -gt 60 ]; then
  # shellcheck disable=SC2086
  timeout "$left" $PY -m hvl_tools.cli bench --device "$DEVICE" --backbone $COMPILE_BACKBONE --n 2 --compile \
    --no-full-train --images 64 --out "$OUT" --name gpu-compile $EXTRA 2>&1 | tail -n 40 | tee -a "$OUT/log.txt"
  echo "compile run: exit ${PIPESTATUS[0]}" | tee -a "$OUT/log.txt"
else
  echo "compile run skipped: $left s left" | tee -a "$OUT/log.txt"
fi
exit "$status"
