#!/usr/bin/env bash
# Installs the Debian packages lienthong uses, only when one is missing (idempotent, quiet when
# done): `install-tools.sh demo` those the demo needs, `install-tools.sh` those the tests need too.
set -euo pipefail
need=()
# The demo's test PKI is made with it.
command -v openssl >/dev/null || need+=(openssl)
# The civil-status sandbox's birth certificates are set in it (connectors/civil_status/certificate.py).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ "${1:-}" != demo ]; then
    command -v xmlsec1 >/dev/null || need+=(xmlsec1)
    command -v pdfsig >/dev/null || need+=(poppler-utils)
    command -v certutil >/dev/null || need+=(libnss3-tools)
    command -v softhsm2-util >/dev/null || need+=(softhsm2)
    command -v pkcs11-tool >/dev/null || need+=(opensc)
    command -v chromium >/dev/null || need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
