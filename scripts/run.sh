#!/usr/bin/env bash
# Runs the suite on its embedded default: the CA (with its public CA-certificate, CRL and OCSP
# endpoints) on loopback, SQLite, encrypted software keys. The first start runs the key ceremony.
#   EPORT_DATA=DIR scripts/run.sh [extra eport-ca serve flags]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${EPORT_DATA:-$PWD/eport-data}"
cargo build --quiet -p ca-server --bin eport-ca
exec target/debug/eport-ca serve --data "$data" --listen 127.0.0.1:8443 --http-listen 127.0.0.1:8080 "$@"
