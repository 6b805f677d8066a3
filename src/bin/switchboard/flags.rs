//! Configuration errors in the words the user wrote: the library names the
//! field of `Config` that is wrong (`timeouts.ping_interval`); the error
//! names the setting as it was given (the flag, the variable, or the key
//! and the file; see [`Sources::describe`]), its value, and what would do.

use std::fmt;

use crate::sources::Sources;

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
    ("access.jwt_audience", "--jwt-audience"),
    ("access.allowed_origins", "--allow-origin"),
    ("subprotocols", "--subprotocol"),
    ("access.jwt_secret", "--jwt-secret-file"),
    ("access.jwt_previous_secrets", "--jwt-secret-file"),
    ("access.tokens", "--auth-token-file"),
    ("backplane.ca_certificate_pem", "--redis-ca-cert"),
    ("backplane.password", "--redis-password-file"),
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

impl From<String> for FlagError {
    fn from(text: String) -> Self {
        FlagError(text)
    }
}

/// Says what the library's complaint about `field` means in the settings
/// `sources` describes: the setting as it was given (or that it was the
/// default), and the problem, with every field it names given as its flag.
pub fn explain(field: &str, problem: &str, sources: &Sources) -> FlagError {
    // Other settings the problem names are shown with their values too.
    let problem = FLAGS.iter().fold(problem.to_owned(), |text, (name, flag)| {
        if *name == field || !text.contains(name) {
            return text.replace(name, flag);
        }
        text.replace(name, &sources.describe(flag.trim_start_matches("--")))
    });
    // The password may have come from the variable, which has no flag.
    if field == "backplane.password" {
        if let Some(given) = sources.describe_redis_password() {
            return FlagError(format!("{given}: {problem}"));
        }
    }
    match FLAGS.iter().find(|(name, _)| *name == field) {
        Some((_, flag)) => sources.error(flag.trim_start_matches("--"), &problem),
        None => FlagError(format!("{field} {problem}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(line: &str) -> Sources {
        let argv = line.split_whitespace().map(std::ffi::OsString::from).collect();
        crate::sources::parse(argv).unwrap().sources
    }

    #[test]
    fn a_field_is_named_by_its_flag_with_the_value_given() {
        let error = explain(
            "timeouts.ping_interval",
            "must be less than timeouts.idle, or a live client that only answers pings is closed as idle",
            &sources("switchboard --idle-timeout 10s"),
        );
        assert_eq!(
            error.to_string(),
            "--ping-interval 20s (the default): must be less than --idle-timeout 10s, or a live client \
             that only answers pings is closed as idle"
        );
        let error = explain(
            "backplane.url",
            "must be a redis:// URL",
            &sources("switchboard --redis=127.0.0.1:6379"),
        );
        assert_eq!(
            error.to_string(),
            "--redis (a Redis URL that does not parse; not shown): must be a redis:// URL"
        );
        let error = explain(
            "backplane.url",
            "is not a valid Redis URL",
            &sources("switchboard --redis=redis://:hunter2@db:70000"),
        );
        assert!(!error.to_string().contains("hunter2"), "{error}");
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
