#!/usr/bin/env bash
# The Python environment of `nas-core finetune`: a pinned virtual environment with PyTorch,
# transformers, PEFT and gguf (LoRA fine-tuning of the proposer, adapter conversion to GGUF),
# installed from PyPI into a cache outside the clone.
#
# Usage: scripts/finetune-env.sh COMMAND
#   install   idempotent: create the environment if it is missing or was made from other pins
#             (about 2 minutes and 5 GB on a first install: PyPI's torch wheel brings its CUDA
#             libraries; it runs on the CPU when there is no GPU and on the GPU when there is)
#   python    print the environment's python interpreter (exit 1 if not installed)
#   check     import every package and print versions and the device torch will use
#
# The environment lives in ${NAS_FINETUNE_CACHE:-$HOME/.cache/nas-finetune}/venv-<key>, where
# <key> hashes the pins below and the Python version: changing a pin makes a new environment,
# never a half-upgraded one. An interrupted install leaves no environment behind (it is
# built under a temporary name and renamed when complete).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${NAS_FINETUNE_CACHE:-$HOME/.cache/nas-finetune}"
PY="${PYTHON:-python3}"
REQS="$HERE/finetune-requirements.txt"

log() { echo "[finetune-env] $*" >&2; }

key() {
    { cat "$REQS"; "$PY" -c 'import sys; print(sys.version_info[:2])'; } | sha256sum | cut -c1-12
}
venv_dir() { echo "$CACHE/venv-$(key)"; }

install() {
    local dir tmp
    dir="$(venv_dir)"
    if [[ -x "$dir/bin/python" && -f "$dir/COMPLETE" ]]; then
        log "environment ready: $dir"
        return
    fi
    mkdir -p "$CACHE"
    tmp="$dir.part"
    rm -rf "$tmp"
    log "creating $dir (pinned in $REQS; a first install takes minutes and about 5 GB)"
    "$PY" -m venv "$tmp"
    "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    # A venv's scripts name its own path: build in place under the final name.
    rm -rf "$dir"
    mv "$tmp" "$dir"
    # pip's console scripts carry the temporary path in their shebang; the interpreter does not
    # care, and nothing here runs them, but rewrite them so they work too.
    grep -rlI --null "$tmp" "$dir/bin" 2>/dev/null | xargs -0 -r sed -i "s#$tmp#$dir#g"
    date -u +%FT%TZ >"$dir/COMPLETE"
    log "environment ready: $dir"
}

python_path() {
    local dir
    dir="$(venv_dir)"
    if [[ -x "$dir/bin/python" && -f "$dir/COMPLETE" ]]; then
        echo "$dir/bin/python"
    else
        log "not installed: run scripts/finetune-env.sh install"
        return 1
    fi
}

check() {
    local py
    py="$(python_path)"
    "$py" - <<'PYEOF'
from importlib.metadata import version
import torch
dev = "cuda" if torch.cuda.is_available() else "cpu"
names = ["torch", "transformers", "peft", "gguf", "safetensors", "sentencepiece"]
print("  ".join(f"{n} {version(n)}" for n in names) + f"  device {dev}")
PYEOF
}

case "${1:-}" in
    install) install ;;
    python) python_path ;;
    check) check ;;
    *) echo "usage: $0 install|python|check" >&2; exit 2 ;;
esac
