#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted input, on stable Rust.
#
#   scripts/fuzz.sh [--runs N | --seconds S] [--jobs J] [TARGET ...]
#
# Targets (fuzz/fuzz_targets/, invariants in fuzz/src/checks.rs): nas_text,
# mutate, llm_answer, cifar, config; none named: all of them. Each runs from
# its committed corpus (fuzz/corpus/TARGET, where new inputs are kept) for N
# executions (default 100000) or S seconds, J targets at once (default 1), and
# prints one line of figures per target. A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes the script fail; copy it to
# fuzz/regressions/TARGET/ once fixed (the test `fuzz_corpus` replays both).
#
# How it works on stable: cargo-fuzz (installed here from crates.io when
# missing) with `--sanitizer none` builds the targets with libFuzzer
# (libfuzzer-sys) and the stable sanitizer-coverage instrumentation
# (`-Cpasses=sancov-module`); no nightly feature is used. Debug assertions
# and overflow checks stay on. `--no-cfg-fuzzing`: the code under test is the
# code users run (proc-macro2 turns its span positions and its source table off
# under `cfg(fuzzing)`, which would hide wrong positions and the table's growth).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
runs=100000
seconds=""
jobs=1
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        -h|--help) sed -n 2,18p "$0"; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
all=(nas_text mutate llm_answer cifar config)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
    case " ${all[*]} " in *" $t "*) ;; *) echo "unknown target $t (one of: ${all[*]})" >&2; exit 2 ;; esac
done

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
    cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

cd fuzz
start=$SECONDS
for t in "${targets[@]}"; do cargo fuzz build --sanitizer none --no-cfg-fuzzing "$t"; done
echo "fuzz: built in $((SECONDS - start)) s"

limit=(-runs="$runs")
[ -z "$seconds" ] || limit=(-max_total_time="$seconds")
mkdir -p logs
run_one() {
    local t="$1" dict=()
    mkdir -p "corpus/$t" "artifacts/$t"
    [ ! -f "dict/$t.dict" ] || dict=(-dict="dict/$t.dict")
    local began=$SECONDS
    if cargo fuzz run --sanitizer none --no-cfg-fuzzing "$t" "corpus/$t" -- \
        "${limit[@]}" "${dict[@]}" -max_len=4096 -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1; then
        status=ok
    else
        status=FAILED
    fi
    local execs rate
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo 0)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo 0)
    echo "fuzz $t: $status, ${execs:-0} executions in $((SECONDS - began)) s (${rate:-0}/s), corpus $(ls "corpus/$t" | wc -l) inputs, crashes $(ls "artifacts/$t" | wc -l)"
    if [ "$status" != ok ]; then tail -n 40 "logs/$t.log"; return 1; fi
}

failed=0
running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
exit "$failed"
