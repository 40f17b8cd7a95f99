#!/usr/bin/env bash
# The GPU side of the training benchmark, for a machine with an NVIDIA GPU, a driver
# and a python3 with torch (no Rust toolchain needed there): runs a nas-core built
# elsewhere with `cargo build --release -p nas-core --features cuda` next to
# bench/pytorch_reference.py, on the GPU and on 2 CPU threads, and a short real
# training run on the GPU. Prints every figure and the ratios ours/PyTorch.
#
# Usage: bench/device.sh [PATH/TO/nas-core]   (default target/release/nas-core)
# Results also go to $OUT (when set) as JSON files.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/nas-core}"
OUT="${OUT:-$(mktemp -d)}"
PY="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

run() { # name, command...
    local name="$1"; shift
    echo "== $name: $*"
    if "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"; then
        cat "$OUT/$name.json"
    else
        echo "FAILED (exit $?)"; tail -20 "$OUT/$name.err"
    fi
}

for batch in 64 256; do
    args=(--batch "$batch" --steps 50 --warmup 10)
    run "ours-cuda-b$batch" "$BIN" bench train --json --backend cuda "${args[@]}"
    run "torch-cuda-b$batch" "$PY" bench/pytorch_reference.py --device cuda "${args[@]}"
done
args=(--batch 64 --steps 20 --warmup 3 --threads 2)
run ours-cpu-b64 "$BIN" bench train --json --backend flex "${args[@]}"
run torch-cpu-b64 "$PY" bench/pytorch_reference.py --device cpu "${args[@]}"
run train-cuda "$BIN" train models/nas/small_cnn.nas --epochs 2 --backend cuda --json

"$PY" - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / f"{name}.json").read_text())
    except Exception:
        return None
for ours, theirs in [("ours-cuda-b64", "torch-cuda-b64"), ("ours-cuda-b256", "torch-cuda-b256"),
                     ("ours-cpu-b64", "torch-cpu-b64")]:
    a, b = load(ours), load(theirs)
    if a and b:
        print(f"{ours:16} {a['images_per_sec']:10.1f} img/s   {theirs:16} {b['images_per_sec']:10.1f} img/s"
              f"   ratio {a['images_per_sec'] / b['images_per_sec']:.2f}x")
    else:
        print(f"{ours} / {theirs}: missing")
PY
