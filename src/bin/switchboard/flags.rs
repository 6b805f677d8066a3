//! Configuration errors in the words the user typed: the library names the
//! field of `Config` that is wrong (`timeouts.ping_interval`); the command
//! line names the flag, the value given and what would do.

use std::ffi::OsString;
use std::fmt;

/// Each `Config` field the library may name, and the flag that sets it.
/// Longer names first, so that a name is never replaced inside a longer one.
const FLAGS: &[(&str, &str)] = &[
    ("limits.max_connections_per_ip", "--max-connections-per-ip"),
    ("limits.max_handshakes_per_ip", "--max-handshakes-per-ip"),
    ("limits.max_messages_per_sec", "--max-messages-per-sec"),
    ("limits.handshake_min_rate", "--handshake-min-rate"),
    ("limits.max_connections", "--max-connections"),
    ("limits.max_handshakes", "--max-handshakes"),
    ("limits.message_burst", "--message-burst"),
    ("limits.spare_threads", "--spare-threads"),
    ("limits.max_head_size", "--max-head-size"),
    ("limits.outbox_bytes", "--outbox-bytes"),
    ("limits.hub_capacity", "--hub-capacity"),
    ("limits.max_headers", "--max-headers"),
    ("timeouts.ping_interval", "--ping-interval"),
    ("timeouts.spare_thread", "--spare-thread-timeout"),
    ("timeouts.max_lifetime", "--max-lifetime"),
    ("timeouts.handshake", "--handshake-timeout"),
    ("timeouts.shutdown", "--shutdown-timeout"),
    ("timeouts.write", "--write-timeout"),
    ("timeouts.close", "--close-timeout"),
    ("timeouts.idle", "--idle-timeout"),
    ("websocket.max_message_size", "--max-message-size"),
    ("websocket.read_buffer_size", "--read-buffer-size"),
    ("websocket.max_frame_size", "--max-frame-size"),
    ("access.private_metrics", "--private-metrics"),
    ("access.jwt_name_claim", "--jwt-name-claim"),
    ("access.jwt_secret", "--jwt-secret-file"),
    ("access.tokens", "--auth-token-file"),
    ("backplane.publish_queue", "--redis-queue"),
    ("backplane.channel_prefix", "--redis-prefix"),
    ("backplane.node_id", "--node-id"),
    ("backplane.url", "--redis"),
    ("thread_stack_size", "--thread-stack-size"),
];

/// A configuration error as the user should read it.
#[derive(Debug)]
pub struct FlagError(String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagError {}

impl FlagError {
    /// A problem with `flag`, whose value `args` holds.
    pub fn new(flag: &str, args: &[OsString], problem: &str) -> Self {
        FlagError(format!("{}: {problem}", written(flag, args)))
    }

    /// A problem with `flag` given `value`.
    pub fn with_value(flag: &str, value: impl fmt::Display, problem: &str) -> Self {
        FlagError(format!("{flag} {value}: {problem}"))
    }
}

/// Says what the library's complaint about `field` means on the command
/// line `args`: the flag, the value given (or that it was the default), and
/// the problem, with every field it names given as its flag.
pub fn explain(field: &str, problem: &str, args: &[OsString]) -> FlagError {
    let problem = FLAGS.iter().fold(problem.to_owned(), |text, (field, flag)| text.replace(field, flag));
    match FLAGS.iter().find(|(name, _)| *name == field) {
        Some((_, flag)) => FlagError::new(flag, args, &problem),
        // `timeouts` names them all: every duration flag.
        None if field == "timeouts" => FlagError(format!("every duration flag {problem}")),
        None => FlagError(format!("{field} {problem}")),
    }
}

/// `--flag value` as the user wrote it, or `--flag` with its default.
fn written(flag: &str, args: &[OsString]) -> String {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
    let prefix = format!("{flag}=");
    let value = args.iter().enumerate().rev().find_map(|(n, arg)| {
        if arg == flag { args.get(n + 1).cloned() } else { arg.strip_prefix(&prefix).map(str::to_owned) }
    });
    match value {
        Some(value) => format!("{flag} {value}"),
        None => format!("{flag} (the default)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn a_field_is_named_by_its_flag_with_the_value_given() {
        let error = explain(
            "timeouts.ping_interval",
            "must be less than timeouts.idle, or a live client that only answers pings is closed as idle",
            &args("switchboard --idle-timeout 10s"),
        );
        assert_eq!(
            error.to_string(),
            "--ping-interval (the default): must be less than --idle-timeout, or a live client that only \
             answers pings is closed as idle"
        );
        let error =
            explain("backplane.url", "must be a redis:// URL", &args("switchboard --redis=127.0.0.1:6379"));
        assert_eq!(error.to_string(), "--redis 127.0.0.1:6379: must be a redis:// URL");
    }

    #[test]
    fn every_flag_in_the_table_exists() {
        use clap::CommandFactory;
        let command = crate::args::Cli::command();
        let longs: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_long())
            .map(|long| format!("--{long}"))
            .collect();
        for (_, flag) in FLAGS {
            assert!(longs.iter().any(|long| long == flag), "{flag} is not a flag");
        }
    }
}
