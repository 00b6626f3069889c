#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (unit, conformance,
# model, doc tests), benches in test mode, and every example run to completion.
# Starts whatever the backends under test need; needs only a Rust toolchain here.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "unit, conformance and model tests; benches run once in test mode"
cargo test --workspace --all-features --all-targets

step "doc tests"
cargo test --workspace --all-features --doc

step "rustdoc (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet

step "examples"
for example in examples/*.rs; do
  name=$(basename "$example" .rs)
  echo "--- example $name"
  cargo run --quiet --all-features --example "$name" >/dev/null
  echo "ok: example $name ran to completion"
done
