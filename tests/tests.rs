//! The integration suite: real servers on real loopback sockets, port 0.

// Helpers: the in-process server, clients, the binary as a child process.
mod support;

// Plain HTTP on the WebSocket port: statuses, built-in routes.
mod http;
// /metrics as the Prometheus text format, its histograms, and /stats beside it.
mod metrics;
// The upgrade: validation, the same-port sequence, bytes sent with the head.
mod upgrade;
// Rooms, echo, ordering, and the hub handle.
mod broadcast;
// One writer at a time: the 101 first, TLS records in order, stalled sockets, no deadlocks.
mod outbox;
// Sizes, UTF-8, protocol errors, idle peers and slow consumers.
mod limits;
// Ctrl-C, SIGTERM and the library's shutdown.
mod shutdown;
// SIGHUP reloads credentials and the certificate; signals named in the log.
mod reload;
// --log-format json, and what RUST_LOG=debug leaves out.
mod logs;
// The binary's settings from a file and SWITCHBOARD_* variables; --print-config.
mod config;
// Threads, file descriptors and hub entries freed when connections end.
mod resources;
// Connection threads parked and reused: bound, timeout, panics, metrics.
mod threads;
// The library API: a custom handler's state, callbacks and endings.
mod handler;
// One test per attack: each refused, and the bystanders still served.
mod hostile;
// JWTs: not before, expiry, and the name a room shows for their holders.
mod credentials;
// Plain routes behind credentials: /rooms, and /metrics and /stats when private.
mod private_routes;
// `switchboard client`: several connections, reconnects, errors, routing.
mod client;
// The programs in examples/, run as child processes.
mod examples;
