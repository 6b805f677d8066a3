#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   scripts/test.sh [--skip PART]...
#
#   1. formatting and clippy, warnings denied;
#   2. cargo test: unit tests, integration tests on real sockets, doctests,
#      and every example built; tests/redis.rs runs two nodes against a
#      redis-server of its own;
#   3. a one-minute soak (scripts/soak.sh 1): mixed load, hostile sockets
#      and slow readers against a ws:// and a wss:// server, failing if
#      descriptors or threads are not given back, anything is lost, or the
#      room's p99 reaches 50 ms;
#   4. the browser test: the chat page in headless Chromium;
#   5. the Autobahn TestSuite, cases 1-10, over ws:// and wss://
#      (scripts/autobahn.sh).
#
# What the suite needs beyond Rust and a C compiler (redis-server, python3
# with venv, openssl, curl, Chromium, node and npm) is installed with
# apt-get when missing, if this user is root or may sudo without a
# password; otherwise the run fails with the command that would install
# it. Python and npm packages go into target/. Nothing is skipped unless
# asked: --skip redis, --skip soak, --skip browser or --skip autobahn
# (repeatable; SWITCHBOARD_SKIP=redis,browser says the same).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

while [ "$#" -gt 0 ]; do
  case "$1" in
    --skip)
      case "${2:-}" in
        redis | soak | browser | autobahn) ;;
        *) echo "--skip takes redis, soak, browser or autobahn" >&2; exit 2 ;;
      esac
      SWITCHBOARD_SKIP="${SWITCHBOARD_SKIP:+$SWITCHBOARD_SKIP,}$2"
      shift 2
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
export SWITCHBOARD_SKIP="${SWITCHBOARD_SKIP:-}"
# shellcheck source=lib/prerequisites.sh
source scripts/lib/prerequisites.sh

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

step "what the suite needs"
need curl curl
skip_asked redis || need redis-server redis-server
if ! skip_asked soak || ! skip_asked autobahn; then
  need python3 python3
  need openssl openssl
  python3 -c 'import ensurepip, venv' 2>/dev/null || need_venv=yes
  if [ "${need_venv:-}" = yes ] && ! skip_asked autobahn; then
    if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
      scripts/apt-install.sh python3-venv
    else
      echo "FAIL: Python's venv is missing. Install it with: sudo apt-get install python3-venv" >&2
      exit 1
    fi
  fi
fi

step "cargo test (the whole workspace: the benchmark tool's unit tests too)"
cargo test --workspace --all-targets --all-features --quiet
cargo test --workspace --doc --quiet

step "soak: one minute of mixed load against two servers, failing on a leak"
skipped soak || scripts/soak.sh 1

step "browser test: the chat page in headless Chromium"
skipped browser || scripts/browser-test.sh

step "Autobahn TestSuite, cases 1-10, over ws:// and wss://"
skipped autobahn || scripts/autobahn.sh

step "all passed${SWITCHBOARD_SKIP:+ (skipped as asked: $SWITCHBOARD_SKIP)}"
