//! The log: env_logger's lines for a terminal, or one JSON object per line
//! for a log pipeline; `RUST_LOG` chooses what is logged either way.

use std::io::Write;

use clap::ValueEnum;
use log::LevelFilter;

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `[time LEVEL target] message`, for people.
    #[default]
    Text,
    /// `{"time":…,"level":…,"target":…,"message":…}`, one per line, for
    /// journald, Loki, Elasticsearch and the like.
    Json,
}

/// Starts the log at `level` unless `RUST_LOG` says otherwise.
pub fn init(level: &str, format: LogFormat) {
    builder(level, format, std::env::var("RUST_LOG").ok().as_deref()).init();
}

/// The log [`init`] starts, with `rust_log` for `RUST_LOG`.
fn builder(level: &str, format: LogFormat, rust_log: Option<&str>) -> env_logger::Builder {
    let mut builder = env_logger::Builder::new();
    // tungstenite logs every frame at debug and below: RUST_LOG=debug is
    // for this server's own lines. rustls warns of what a client sent (an
    // SNI name it takes for illegal, an IP address given as one) once per
    // handshake, with the client's text whole: a client could write a line
    // of any length per connection, where the server counts failed
    // handshakes itself. Naming either in RUST_LOG (say
    // RUST_LOG=debug,tungstenite=trace) overrides this.
    builder
        .filter_level(level.parse().unwrap_or(LevelFilter::Info))
        .filter_module("tungstenite", LevelFilter::Info)
        .filter_module("rustls", LevelFilter::Error);
    if let Some(filters) = rust_log {
        builder.parse_filters(filters);
    }
    if format == LogFormat::Json {
        builder.format(|out, record| {
            // In this order, which a JSON object alone would not keep.
            let text = |value: &str| serde_json::Value::from(value).to_string();
            writeln!(
                out,
                r#"{{"time":"{}","level":"{}","target":{},"message":{}}}"#,
                out.timestamp_micros(),
                record.level(),
                text(record.target()),
                text(&record.args().to_string()),
            )
        });
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_client_makes_rustls_say_is_not_logged_unless_asked_for() {
        let warns = |rust_log: Option<&str>, target: &str| {
            let metadata = log::Metadata::builder().level(log::Level::Warn).target(target).build();
            log::Log::enabled(&builder("debug", LogFormat::Text, rust_log).build(), &metadata)
        };
        assert!(!warns(None, "rustls::msgs::handshake"));
        assert!(warns(None, "switchboard::connection"));
        assert!(warns(Some("info,rustls=warn"), "rustls::msgs::handshake"));
    }

    #[test]
    fn every_format_has_a_flag_value() {
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", false), Ok(LogFormat::Text));
    }
}
