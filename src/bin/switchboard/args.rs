//! The command line, declared with clap's derive, and its conversion into a [`Config`].
//!
//! Every default shown by `--help` is read from `Config::default()`, so the
//! two cannot drift apart.

use std::net::SocketAddr;

use clap::Parser;
use humantime::Duration;
use switchboard::{Config, Limits, Timeouts};

/// A WebSocket server: rooms at /ws/<room>, an echo at /echo, a chat page at /,
/// and /healthz, /metrics and /stats, all on one port.
///
/// Logging follows RUST_LOG (default `info`); `RUST_LOG=debug` shows every
/// connection.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value_t = Config::default().listen)]
    pub listen: SocketAddr,

    /// The whole HTTP request head must arrive within this time, or 408.
    #[arg(long, value_name = "DURATION", default_value_t = Timeouts::default().handshake.into())]
    pub handshake_timeout: Duration,

    /// Close a WebSocket client that sends nothing, pongs included, for this long (1001).
    #[arg(long, value_name = "DURATION", default_value_t = Timeouts::default().idle.into())]
    pub idle_timeout: Duration,

    /// Ping every client this often; must be less than --idle-timeout.
    #[arg(long, value_name = "DURATION", default_value_t = Timeouts::default().ping_interval.into())]
    pub ping_interval: Duration,

    /// Drop a client whose socket accepts no bytes for this long.
    #[arg(long, value_name = "DURATION", default_value_t = Timeouts::default().write.into())]
    pub write_timeout: Duration,

    /// After sending a close frame, wait this long for the client's reply.
    #[arg(long, value_name = "DURATION", default_value_t = Timeouts::default().close.into())]
    pub close_timeout: Duration,

    /// On Ctrl-C or SIGTERM, the bound on the whole graceful shutdown.
    #[arg(long, value_name = "DURATION", default_value_t = Timeouts::default().shutdown.into())]
    pub shutdown_timeout: Duration,

    /// Largest message in bytes, after reassembling fragments (larger: close 1009).
    #[arg(long, value_name = "BYTES", default_value_t = default_max_message_size())]
    pub max_message_size: usize,

    /// Largest single frame payload in bytes (larger: close 1009).
    #[arg(long, value_name = "BYTES", default_value_t = default_max_frame_size())]
    pub max_frame_size: usize,

    /// Read buffer per connection in bytes (tungstenite's default is 128 KiB).
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().websocket.read_buffer_size)]
    pub read_buffer_size: usize,

    /// Bytes queued per client before it is closed as a slow consumer (1008);
    /// must hold the largest message.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().outbox_bytes)]
    pub outbox_bytes: usize,

    /// Commands queued for the hub before publishing clients wait.
    #[arg(long, value_name = "COMMANDS", default_value_t = Limits::default().hub_capacity)]
    pub hub_capacity: usize,

    /// Largest HTTP request head in bytes (larger: 431).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_head_size)]
    pub max_head_size: usize,

    /// Most header fields in a request head (more: 431).
    #[arg(long, value_name = "COUNT", default_value_t = Limits::default().max_headers)]
    pub max_headers: usize,

    /// Stack size of each connection thread, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().thread_stack_size)]
    pub thread_stack_size: usize,
}

fn default_max_message_size() -> usize {
    Config::default().websocket.max_message_size.expect("Bug: the default has a message limit")
}

fn default_max_frame_size() -> usize {
    Config::default().websocket.max_frame_size.expect("Bug: the default has a frame limit")
}

impl Args {
    /// The library configuration these arguments describe.
    pub fn into_config(self) -> Config {
        let defaults = Config::default();
        Config {
            listen: self.listen,
            timeouts: Timeouts {
                handshake: self.handshake_timeout.into(),
                idle: self.idle_timeout.into(),
                ping_interval: self.ping_interval.into(),
                write: self.write_timeout.into(),
                close: self.close_timeout.into(),
                shutdown: self.shutdown_timeout.into(),
            },
            limits: Limits {
                max_head_size: self.max_head_size,
                max_headers: self.max_headers,
                outbox_bytes: self.outbox_bytes,
                hub_capacity: self.hub_capacity,
            },
            websocket: defaults
                .websocket
                .read_buffer_size(self.read_buffer_size)
                .max_message_size(Some(self.max_message_size))
                .max_frame_size(Some(self.max_frame_size)),
            thread_stack_size: self.thread_stack_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn no_flags_gives_the_library_defaults() {
        let config = Args::parse_from(["switchboard"]).into_config();
        let defaults = Config::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.timeouts, defaults.timeouts);
        assert_eq!(config.limits, defaults.limits);
        assert_eq!(config.thread_stack_size, defaults.thread_stack_size);
        assert_eq!(config.websocket.read_buffer_size, defaults.websocket.read_buffer_size);
        assert_eq!(config.websocket.max_message_size, defaults.websocket.max_message_size);
        assert_eq!(config.websocket.max_frame_size, defaults.websocket.max_frame_size);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        let config =
            Args::parse_from(["switchboard", "--idle-timeout", "1m 30s", "--ping-interval", "500ms"])
                .into_config();
        assert_eq!(config.timeouts.idle, std::time::Duration::from_secs(90));
        assert_eq!(config.timeouts.ping_interval, std::time::Duration::from_millis(500));
    }
}
