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
    let mut builder = env_logger::Builder::new();
    // tungstenite logs every frame at debug and below: RUST_LOG=debug is
    // for this server's own lines. Naming tungstenite in RUST_LOG (say
    // RUST_LOG=debug,tungstenite=trace) overrides this.
    builder
        .filter_level(level.parse().unwrap_or(LevelFilter::Info))
        .filter_module("tungstenite", LevelFilter::Info);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
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
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_has_a_flag_value() {
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", false), Ok(LogFormat::Text));
    }
}
