#!/usr/bin/env bash
# Creates the TLS material for the Azure Key Vault *stand-in* (test/helpers/azure-keyvault-standin.ts):
# a throwaway self-signed CA and a server certificate for 127.0.0.1 / localhost, signed by it, in
# $KEYWARD_TEST_CACHE/azure-standin/, only when missing. The Azure SDK refuses to send bearer tokens
# over plain HTTP, so the stand-in (and its token endpoint) must speak HTTPS; scripts/run-node-tests.sh
# points NODE_EXTRA_CA_CERTS at the CA so the tests trust it. Nothing is written into the repository,
# and certificate checking is never switched off.
set -euo pipefail

dir="${KEYWARD_TEST_CACHE:-$HOME/.cache/keyward-test}/azure-standin"
ca_key="$dir/ca.key"
ca_cert="$dir/ca.pem"
server_key="$dir/server.key"
server_cert="$dir/server.pem"

fail() {
  echo "provision: azure-standin-tls: $*" >&2
  exit 1
}

if [ -s "$ca_cert" ] && [ -s "$server_key" ] && [ -s "$server_cert" ] &&
  openssl verify -CAfile "$ca_cert" "$server_cert" >/dev/null 2>&1 &&
  openssl x509 -checkend 86400 -noout -in "$server_cert" >/dev/null 2>&1; then
  echo "provision: azure-standin-tls present ($dir)"
  exit 0
fi

command -v openssl >/dev/null 2>&1 || fail "openssl is needed and is not on PATH; install it (e.g. apt-get install openssl) and run this again"

echo "provision: creating a test CA and a 127.0.0.1/localhost server certificate for the Azure Key Vault stand-in in $dir"
mkdir -p "$dir"
chmod 700 "$dir"
work="$(mktemp -d "$dir/tmp.XXXXXX")"
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
  -keyout "$work/ca.key" -out "$work/ca.pem" \
  -subj "/CN=Keyward test CA (Azure Key Vault stand-in)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" >"$work/openssl.log" 2>&1 ||
  fail "creating the CA failed: $(cat "$work/openssl.log")"

openssl req -newkey rsa:2048 -nodes -sha256 \
  -keyout "$work/server.key" -out "$work/server.csr" \
  -subj "/CN=127.0.0.1" >"$work/openssl.log" 2>&1 ||
  fail "creating the server key failed: $(cat "$work/openssl.log")"

cat >"$work/server.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
openssl x509 -req -sha256 -days 825 -in "$work/server.csr" \
  -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -extfile "$work/server.ext" -out "$work/server.pem" >"$work/openssl.log" 2>&1 ||
  fail "signing the server certificate failed: $(cat "$work/openssl.log")"

chmod 600 "$work/ca.key" "$work/server.key"
mv -f "$work/ca.key" "$ca_key"
mv -f "$work/server.key" "$server_key"
mv -f "$work/server.pem" "$server_cert"
# The CA last: run-node-tests.sh trusts it only once it exists, i.e. once the rest is in place.
mv -f "$work/ca.pem" "$ca_cert"
echo "provision: created $ca_cert (test CA) and $server_cert (127.0.0.1, localhost)"
