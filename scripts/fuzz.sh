#!/usr/bin/env bash
# Fuzzes the request-head parser and router for a bounded time.
#   scripts/fuzz.sh SECONDS        (e.g. scripts/fuzz.sh 300)
# Prints how many inputs it tried. Exit status 0 iff no input crashed.
#
# cargo fuzz needs nightly compiler flags (the address sanitizer);
# RUSTC_BOOTSTRAP=1 lets the machine's stable toolchain accept them. The
# corpus grows under target/fuzz-corpus/ and starts from fuzz/seeds/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:?usage: scripts/fuzz.sh SECONDS}"
case "$seconds" in ''|*[!0-9]*) echo "SECONDS must be a whole number" >&2; exit 2;; esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2 --quiet
fi

corpus="target/fuzz-corpus/request_head"
mkdir -p "$corpus"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# The fuzzer's own status, not the filter's: errexit and pipefail are
# off for this one pipeline, so that neither the fuzzer failing nor grep
# matching nothing stops the script before PIPESTATUS is read.
set +e +o pipefail
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz request_head "$corpus" fuzz/seeds/request_head -- \
  -max_total_time="$seconds" -dict=fuzz/request_head.dict -print_final_stats=1 -max_len=16384 \
  2>&1 | tee "$log" | grep -E '^#[0-9]+.*(pulse|DONE)|SUMMARY|panicked|ERROR'
status="${PIPESTATUS[0]}"
set -e -o pipefail

tried="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
echo "fuzz: tried $tried inputs in ${seconds}s; exit status $status"
if [ "$status" -ne 0 ]; then
  echo "fuzz: a crash was found; the input is under fuzz/artifacts/request_head/" >&2
fi
exit "$status"
