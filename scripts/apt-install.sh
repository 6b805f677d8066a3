#!/usr/bin/env bash
# Installs Debian packages, as root or through sudo:
#   scripts/apt-install.sh PACKAGE...
# The scripts that need an outside component (redis-server, nginx,
# Chromium) call it when the component is missing; any system service a
# package starts keeps its default port, and is left alone.
set -euo pipefail
[ "$#" -gt 0 ] || { echo "usage: scripts/apt-install.sh PACKAGE..." >&2; exit 2; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
echo "installing Debian's $*" >&2
as_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
