#!/usr/bin/env bash
# Drives the chat page at / in a real headless Chromium, as a person would:
# three pages in two rooms chat, see who is there, get HTML shown as text, and
# reconnect by themselves when the server is interrupted and started again;
# against a server that asks for a token, they ask for one, take it typed or
# from #token= in their address, and stop on 401 and 403 rather than retry;
# against one that names senders by their JWTs, each page marks as its own
# only what it sent; and none of it breaks the page's Content-Security-Policy, which Chromium is
# seen to enforce (an injected script is refused, framing the page fails).
#   scripts/browser-test.sh
# Screenshots and server logs go to target/browser-test/. Exit status 0 iff
# every check passed.
#
# Needs Debian's chromium (/usr/bin/chromium, or CHROMIUM=path), node and
# npm: each is installed when missing if this user can, and otherwise the
# script fails with the command that would install it (see
# scripts/lib/prerequisites.sh). playwright-core, pinned below, is installed
# into target/ on first use; it drives the system Chromium and never
# downloads a browser of its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/prerequisites.sh
source scripts/lib/prerequisites.sh

playwright_version="1.64.1"
chromium="${CHROMIUM:-/usr/bin/chromium}"
out="target/browser-test"
# Where cargo puts the build: CARGO_TARGET_DIR when set, so that the test
# runs what it just built, never an older binary left in target/.
server="${CARGO_TARGET_DIR:-target}/release/switchboard"
node_dir="target/node/playwright-core-$playwright_version"

if [ "$chromium" = /usr/bin/chromium ]; then
  need chromium chromium
fi
[ -x "$chromium" ] || { echo "FAIL: no Chromium at $chromium" >&2; exit 1; }
need node nodejs
need npm npm

# --no-save and --no-package-lock: nothing that names a registry is written
# outside target/.
if [ ! -f "$node_dir/node_modules/playwright-core/package.json" ]; then
  echo "installing playwright-core@$playwright_version into $node_dir" >&2
  mkdir -p "$node_dir"
  if ! npm install --prefix "$node_dir" --no-save --no-package-lock --no-audit --no-fund \
    --loglevel=error "playwright-core@$playwright_version" >&2; then
    rm -rf "$node_dir"
    echo "FAIL: npm could not install playwright-core@$playwright_version" >&2
    exit 1
  fi
fi

cargo build --release --quiet
rm -rf "$out"
mkdir -p "$out"

# The Node script starts the server itself (port 0, then the same port again
# after an interrupt), so it runs in a process group of its own: cleanup can
# then stop it and any server it started, and nothing else.
test_pid=""
cleanup() {
  if [ -n "$test_pid" ] && kill -0 -- "-$test_pid" 2>/dev/null; then
    kill -TERM -- "-$test_pid" 2>/dev/null || true
    wait "$test_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

setsid node scripts/browser-test.mjs \
  --server "$server" \
  --chromium "$chromium" \
  --playwright "$node_dir" \
  --out "$out" &
test_pid=$!
status=0
wait "$test_pid" || status=$?
test_pid=""
exit "$status"
