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
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing Debian packages: ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

for mod in gmssl pkilint; do
  if ! python3 -c "import $mod" >/dev/null 2>&1; then
    step "installing Python $mod (interop checks)"
    python3 -m pip install -q --disable-pip-version-check "$mod"
  fi
done

cleanup() {
  if [ -n "${pg_dir:-}" ] && [ -f "$pg_dir/data/postmaster.pid" ]; then
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  [ -n "${pg_dir:-}" ] && rm -rf "$pg_dir"
  [ -n "${log:-}" ] && rm -f "$log"
  return 0
}
trap cleanup EXIT

# A throwaway PostgreSQL for the store tests, unless one is given. It listens on 127.0.0.1 on a
# free port, trusts local connections, and is stopped (by its own pid file) when this script ends.
if [ -z "${EPORT_TEST_POSTGRES_URL:-}" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  step "starting a throwaway PostgreSQL ($pg_bin)"
  pg_dir=$(mktemp -d /tmp/eport-pg.XXXXXX)
  chown postgres "$pg_dir"
  pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  runuser -u postgres -- "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on" start >/dev/null
  export EPORT_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
fi
echo "PostgreSQL for tests: $EPORT_TEST_POSTGRES_URL"

step "dependency policy: no aws-lc-rs, no openssl-sys in the tree"
tree=$(cargo tree --workspace --locked -e all --prefix none)
if grep -E '^(aws-lc-rs|aws-lc-sys|openssl-sys) ' <<<"$tree"; then
  echo "forbidden crate in the dependency tree (see STACK notes in README)" >&2
  exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
log=$(mktemp)
# pipefail keeps cargo's exit status through tee.
cargo test --workspace --locked 2>&1 | tee "$log"

step "summary"
grep -E '^test result:' "$log" | awk '{p+=$4; f+=$6} END {printf "%d passed, %d failed\n", p, f}'
