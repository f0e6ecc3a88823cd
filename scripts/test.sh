#!/usr/bin/env bash
# Runs every check and test of eport-pki: the README's test command and what CI runs.
# Installs what the tests need when it is missing (Debian packages, Python tools), then
# checks formatting, lints with warnings as errors, and runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

step() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v softhsm2-util >/dev/null 2>&1 || need_apt+=(softhsm2)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing Debian packages: ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import gmssl' >/dev/null 2>&1; then
  step "installing Python gmssl (second SM2 implementation for interop tests)"
  python3 -m pip install -q --disable-pip-version-check gmssl
fi

step "dependency policy: no aws-lc-rs, no openssl-sys in the tree"
if cargo tree --workspace --locked -e all --prefix none 2>/dev/null | grep -E '^(aws-lc-rs|aws-lc-sys|openssl-sys) ' ; then
  echo "forbidden crate in the dependency tree (see STACK notes in README)" >&2
  exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# pipefail keeps cargo's exit status through tee.
cargo test --workspace --locked 2>&1 | tee "$log"

step "summary"
grep -E '^test result:' "$log" | awk '{p+=$4; f+=$6} END {printf "%d passed, %d failed\n", p, f}'
