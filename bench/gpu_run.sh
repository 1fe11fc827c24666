#!/usr/bin/env bash
# The prepared device-machine run (one call of the device tool, ~8 minutes): absolute GPU numbers.
# Usage there: bash bench/gpu_run.sh   (writes JSON files into $OUT; the device image has torch)
# Wheels the image lacks travel in .whl/ (platformdirs).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=$PWD/engine:$PWD/plugin/dragfu:/tmp/site  # dragfu_core: the protocol codec
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' >> "$OUT/gpu.txt"
B="python3 -m bench"  # from the repository root
step() { local limit=$1; shift; echo "== $*"; timeout "$limit" "$@" 2>&1 | tail -3; }
step 45 $B generator --config 512 --device cuda --repeats 20 --out "$OUT/generator_512_fp32.json"
step 45 $B generator --config 512 --device cuda --repeats 20 --precision fp16 --out "$OUT/generator_512_fp16.json"
step 45 $B generator --config toy --device cuda --repeats 20 --out "$OUT/generator_toy.json"
step 75 $B drag --device cuda --sections speed --speed-steps 50 --out "$OUT/drag_speed.json"
step 120 $B project --device cuda ${PROJECT_BENCH_ARGS:---images 0 --speed-512} --out "$OUT/project.json"
step 150 $B drag --device cuda --sections manipulation --pairs ${GPU_PAIRS:-40} --out "$OUT/drag_manipulation.json"
echo "== done"; ls -la "$OUT"
