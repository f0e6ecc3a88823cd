#!/usr/bin/env bash
# A short tour of `eport` on software keys: make a key, a certificate request, a certificate,
# sign a declaration, verify it, and watch a one-byte change be caught. P-256 and SM2.
# Until the CA server exists this is the README's "run the suite" command.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p eport
eport="$PWD/target/debug/eport"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

export DEMO_KEY_PASSPHRASE="demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '<CEB311Message><OrderNo>2026-0001</OrderNo><Amount>1200.00</Amount></CEB311Message>\n' > declaration.xml

for alg in p256 sm2; do
  echo "== $alg =="
  "$eport" key generate --algorithm "$alg" --key "$alg.key" --passphrase-env DEMO_KEY_PASSPHRASE
  "$eport" csr --key "$alg.key" --passphrase-env DEMO_KEY_PASSPHRASE \
    --subject "CN=Zhang San,O=Example Trading Co,C=CN" --out "$alg.csr"
  if [ "$alg" = p256 ] && command -v openssl >/dev/null; then openssl req -verify -noout -in "$alg.csr"; fi
  "$eport" cert self-sign --key "$alg.key" --passphrase-env DEMO_KEY_PASSPHRASE \
    --subject "CN=Zhang San,O=Example Trading Co,C=CN" --days 30 --out "$alg.crt"
  "$eport" sign --key "$alg.key" --passphrase-env DEMO_KEY_PASSPHRASE --cert "$alg.crt" \
    --in declaration.xml --out "$alg.p7s"
  "$eport" verify --in declaration.xml --sig "$alg.p7s"
  sed 's/1200.00/9200.00/' declaration.xml > tampered.xml
  if "$eport" verify --in tampered.xml --sig "$alg.p7s"; then
    echo "tampered declaration was accepted" >&2; exit 1
  fi
  echo "(the tampered declaration was rejected, as it must be)"
done
