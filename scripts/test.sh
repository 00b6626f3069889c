#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (unit, conformance,
# model, doc tests), benches in test mode, and every example run to completion.
# Starts whatever the backends under test need; needs only a Rust toolchain here.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# PostgreSQL for ems-storage-postgres: DATABASE_URL, or the local server.
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
step "PostgreSQL at $DATABASE_URL"
if ! psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "not answering; starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do
      psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1 && break
      sleep 1
    done
  fi
fi
if ! psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "PostgreSQL at $DATABASE_URL is unreachable: the postgres backend tests need it" >&2
  exit 1
fi
# Each test creates its own database; forget those of earlier runs.
psql "$DATABASE_URL" -Atqc "select datname from pg_database where datname like 'ems\_test\_%' or datname like 'ems\_bench\_%'" |
  while read -r name; do psql "$DATABASE_URL" -qc "drop database if exists $name with (force)" >/dev/null; done
echo "ok"

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
