//! Fuzzes the request-head parser and the router: whatever bytes a client
//! sends first, the server must answer or drop it, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    switchboard::fuzzing::parse_and_route(bytes);
});
