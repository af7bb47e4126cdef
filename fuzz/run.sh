#!/usr/bin/env bash
# Long fuzz runs of the parsers that read user files, with cargo-fuzz (nightly):
#
#   cargo install cargo-fuzz            # once
#   fuzz/run.sh [RUNS] [TARGET...]      # default 1000000 runs of each target
#
# Targets: idx (IDX images, labels, a pair), gzip_idx (.gz then IDX), checkpoint
# (safetensors header, offsets, dtypes, shapes, metadata, the description inside),
# description (network description JSON). The seed corpus is written from real files
# (the official MNIST files cut to a few images, a checkpoint `save` writes, the built-in
# descriptions) by `cargo test -p distill --test fuzz seeds_for_cargo_fuzz -- --ignored` into
# fuzz/corpus/ (git-ignored: it holds MNIST bytes). A crash, panic, leak or a run over
# 10 s stops its target and leaves the input under fuzz/artifacts/TARGET/; the line
# `Done N runs` at the end of each target's log says how many executions ran.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx gzip_idx checkpoint description)
KD_FUZZ_CORPUS="$PWD/fuzz/corpus" cargo test --release -p distill --test fuzz seeds_for_cargo_fuzz -q -- --ignored
cd fuzz
for target in "${targets[@]}"; do
    echo "== $target: $runs runs"
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -runs="$runs" -max_len=20000 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        2>&1 | tee "corpus/$target.log" | grep -E "^(Done|stat::number_of_executed_units|==|SUMMARY)|panicked|deadly" || true
done
