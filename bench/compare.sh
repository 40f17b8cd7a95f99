#!/usr/bin/env bash
# Runs `nas-core bench train` and bench/pytorch_reference.py on the same reference
# net, batch, optimiser and thread count, one after the other, and prints both
# figures and the ratio ours/PyTorch.
#
# Usage: bench/compare.sh [--batch 64] [--steps 30] [--warmup 5] [--threads 2]
#                         [--optim adam|sgd]
# Environment: PYTHON (default /work/torch-venv/bin/python, else python3) must have
# torch installed (`python3 -m venv DIR && DIR/bin/pip install torch`, outside the
# repository; a benchmark-only dependency). CARGO_FEATURES / BACKEND select another
# Burn backend, e.g. CARGO_FEATURES=cuda BACKEND=cuda TORCH_DEVICE=cuda.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x /work/torch-venv/bin/python ]]; then PYTHON=/work/torch-venv/bin/python; else PYTHON=python3; fi
fi
BACKEND="${BACKEND:-flex}"
TORCH_DEVICE="${TORCH_DEVICE:-cpu}"
features=()
if [[ -n "${CARGO_FEATURES:-}" ]]; then features=(--features "$CARGO_FEATURES"); fi

cargo build --release -p nas-core "${features[@]}" --quiet
ours=$(target/release/nas-core bench train --json --backend "$BACKEND" "$@")
theirs=$("$PYTHON" bench/pytorch_reference.py --device "$TORCH_DEVICE" "$@")

"$PYTHON" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert ours["params"] == theirs["params"], (ours["params"], theirs["params"])
for name, r in (("ours", ours), ("pytorch", theirs)):
    print(f"{name:8} {r['backend']:28} {r['images_per_sec']:9.1f} images/s  "
          f"(fwd {r['forward_ms']:.1f} ms, bwd {r['backward_ms']:.1f} ms, opt {r['optimizer_ms']:.1f} ms)")
print(f"net {ours['net']} ({ours['params']:,} params), batch {ours['batch']}, "
      f"{ours['optim']}, {ours['threads']} threads")
print(f"ratio ours/pytorch: {ours['images_per_sec'] / theirs['images_per_sec']:.2f}x")
PY
