#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. formatting and clippy, warnings denied;
#   2. cargo test: unit tests, integration tests on real sockets, doctests,
#      and every example built; tests/redis.rs runs two nodes against a
#      redis-server of its own;
#   3. a one-minute soak (scripts/soak.sh 1): mixed load, hostile sockets
#      and slow readers against a ws:// and a wss:// server, failing if
#      descriptors or threads are not given back, anything is lost, or the
#      room's p99 reaches 50 ms;
#   4. the browser test: the chat page in headless Chromium;
#   5. the Autobahn TestSuite, cases 1-10, against /echo of a release build.
#
# The browser test uses Debian's chromium and installs playwright-core into
# target/ on first use (see scripts/browser-test.sh). The Autobahn runner
# lives in ../shared/autobahn (override with AUTOBAHN_DIR) and builds its own
# Python venv on first use. Under CI=true a missing component fails the run
# (Chromium is installed with apt-get first); elsewhere it is skipped with a
# warning.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }
missing() {
  if [ "${CI:-}" = "true" ]; then
    echo "FAIL: $* (required under CI=true)" >&2
    exit 1
  fi
  printf '\n!!!!!!!!\n!! SKIPPED: %s\n!!!!!!!!\n' "$*" >&2
}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features --quiet -- -D warnings

step "redis-server, for tests/redis.rs"
if ! command -v redis-server >/dev/null && [ "${CI:-}" = "true" ]; then
  scripts/apt-install.sh redis-server
fi
if command -v redis-server >/dev/null; then
  redis-server --version
else
  # tests/redis.rs then passes without running anything, and says so.
  missing "redis-server not found: the two-node tests in tests/redis.rs do not run (apt-get install redis-server)"
fi

step "cargo test (every feature: the benchmark tool's unit tests too)"
cargo test --all-targets --all-features --quiet
cargo test --doc --quiet

step "soak: one minute of mixed load against two servers, failing on a leak"
for tool in python3 openssl; do
  if ! command -v "$tool" >/dev/null && [ "${CI:-}" = "true" ]; then
    scripts/apt-install.sh "$tool"
  fi
done
scripts/soak.sh 1

step "browser test: the chat page in headless Chromium"
# Skips loudly by itself outside CI when Chromium or node is missing.
scripts/browser-test.sh

step "Autobahn TestSuite, cases 1-10, against /echo"
autobahn_dir="${AUTOBAHN_DIR:-../shared/autobahn}"
if [ ! -x "$autobahn_dir/run.sh" ]; then
  missing "Autobahn runner not found at $autobahn_dir/run.sh"
elif ! command -v python3 >/dev/null; then
  missing "python3 not found (the Autobahn runner needs it)"
else
  scripts/autobahn.sh "$autobahn_dir"
fi

step "all passed"
