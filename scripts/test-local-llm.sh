#!/usr/bin/env bash
# Tests of scripts/local-llm.sh's failure path against the real, cached build (run after
# `scripts/local-llm.sh start`; .ci/run runs it). A server that cannot load its model must
# make `start` fail at once with the dead process's exit status and the tail of its log;
# the running servers and their pid files are not touched.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TMP="$(mktemp -d)"
trap 'NAS_LLM_RUN="$TMP/run" NAS_LLM_PORT=$PORT NAS_OLLAMA_PORT=$OPORT "$HERE/local-llm.sh" stop >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
OPORT="$(free_port)"
passed=0
failed=0
check() { # check NAME CONDITION-RESULT
    if [[ "$2" == 0 ]]; then passed=$((passed + 1)); echo "ok: $1"; else failed=$((failed + 1)); echo "FAILED: $1"; fi
}

# A file that is not a GGUF model.
head -c 4096 /dev/urandom >"$TMP/garbage.gguf"
start=$SECONDS
set +e
NAS_LLM_RUN="$TMP/run" NAS_LLM_PORT=$PORT NAS_OLLAMA_PORT=$OPORT NAS_LLM_HEALTH_TIMEOUT=120 \
    "$HERE/local-llm.sh" start --model "$TMP/garbage.gguf" >"$TMP/out" 2>&1
rc=$?
set -e
took=$((SECONDS - start))
cat "$TMP/out"
check "start with a model that does not load fails" "$([[ $rc -ne 0 ]]; echo $?)"
check "it says the server died and how (exit status or signal)" \
    "$(grep -Eq 'llama-server \(pid [0-9]+\) is dead: (exit status [0-9]+|killed by signal)' "$TMP/out"; echo $?)"
check "it prints the tail of the server's log" \
    "$(grep -q "last lines of $TMP/run/llama-server.log" "$TMP/out"; echo $?)"
check "the log tail holds the server's own reason" \
    "$(grep -Eiq 'failed to load|error loading|gguf' "$TMP/out"; echo $?)"
check "no GNU tail usage error hides the reason" "$(! grep -q 'option used in invalid context' "$TMP/out"; echo $?)"
check "it fails at once, not after the health timeout (${took}s)" "$([[ $took -lt 100 ]]; echo $?)"

# A missing file is refused before anything starts.
set +e
NAS_LLM_RUN="$TMP/run" NAS_LLM_PORT=$PORT NAS_OLLAMA_PORT=$OPORT \
    "$HERE/local-llm.sh" start --model "$TMP/missing.gguf" >"$TMP/out2" 2>&1
rc=$?
set -e
check "a missing model file is a clear error" \
    "$([[ $rc -ne 0 ]] && grep -q "no such file: $TMP/missing.gguf" "$TMP/out2"; echo $?)"

# The proved build is what status reports.
"$HERE/local-llm.sh" status >"$TMP/status"
check "status names a build that passed its self-test" "$(grep -q 'self-test passed' "$TMP/status"; echo $?)"

# A binary cached under the old layout (bin-<cpu>/, built with the AMX path) is never used:
# a cache holding it beside the proved build resolves to the proved build.
REAL_BIN_DIR="$("$HERE/local-llm.sh" bindir)"
FAKE="$TMP/cache"
mkdir -p "$FAKE"
cp -r "$REAL_BIN_DIR" "$FAKE/"
CPU_KEY="$({ grep -m1 '^model name' /proc/cpuinfo || true; grep -m1 '^flags' /proc/cpuinfo || true; } | sha256sum | cut -c1-12)"
mkdir -p "$FAKE/bin-$CPU_KEY"
printf '#!/bin/sh\nexit 42\n' >"$FAKE/bin-$CPU_KEY/llama-server"
chmod +x "$FAKE/bin-$CPU_KEY/llama-server"
got="$(NAS_LLM_CACHE="$FAKE" "$HERE/local-llm.sh" bindir 2>/dev/null || true)"
check "an old-layout cached binary is not picked up (got: $got)" \
    "$([[ "$got" == "$FAKE/$(basename "$REAL_BIN_DIR")" ]]; echo $?)"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
