//! `--print-config`: the settings in force, written as a configuration file
//! to start from. Every setting is there, with its help as a comment; those
//! that were given (by flag, variable or file) are set, the others are
//! commented out with their defaults. Read back with `--config`, it makes
//! the same settings, and prints the same file.

use clap::CommandFactory;

use crate::args::Cli;
use crate::sources::{Origin, REDIS_PASSWORD_VAR, Sources, settings};

/// Comments are wrapped to this many columns.
const WIDTH: usize = 92;

const HEADER: &str = "\
# switchboard's configuration, as `switchboard --print-config` wrote it: start the
# server with `switchboard --config FILE`, or SWITCHBOARD_CONFIG=FILE.
#
# Each key is a flag of the same name (`switchboard --help`), and a variable too:
# SWITCHBOARD_ and the key in upper snake case, as SWITCHBOARD_MAX_CONNECTIONS. A flag
# wins over its variable, which wins over this file. The keys commented out are at
# their defaults.
";

/// The configuration file that `sources` makes.
pub fn render(sources: &Sources) -> String {
    // As declared: the file's values make clap move the flags they set.
    let command = Cli::command();
    let mut out = String::from(HEADER);
    let mut heading = None;
    for (key, arg) in settings(&command) {
        let Some(setting) = sources.get(key) else { continue };
        if arg.get_help_heading() != heading {
            heading = arg.get_help_heading();
            if let Some(heading) = heading {
                out.push_str(&format!("\n# ---- {heading} ----\n"));
            }
        }
        out.push('\n');
        let help = arg.get_long_help().or(arg.get_help()).map(ToString::to_string).unwrap_or_default();
        comment(&mut out, &help);
        let value = if setting.values.is_empty() && setting.origin == Origin::Default {
            // No default, and not given: what would go there.
            let name =
                arg.get_value_names().and_then(|names| names.first()).map_or("VALUE", |name| name.as_str());
            if setting.repeatable { format!("[\"{name}\"]") } else { format!("\"{name}\"") }
        } else {
            setting.toml(key)
        };
        // Also when read back from a file this printed: the same file again.
        if key == "redis" && sources.redis_url_has_password() {
            comment(
                &mut out,
                &format!(
                    "The URL's password is not shown, but ***: give it with redis-password-file, or \
                     {REDIS_PASSWORD_VAR}, and take it out of the URL."
                ),
            );
        }
        let line = format!("{key} = {value}");
        if setting.origin == Origin::Default {
            out.push_str(&format!("# {line}\n"));
        } else {
            out.push_str(&format!("{line}\n"));
        }
    }
    out
}

/// Why `sources` cannot be written as a file: a value that is not UTF-8,
/// which a file read back would not give.
pub fn unwritable(sources: &Sources) -> Option<String> {
    let command = Cli::command();
    let key =
        settings(&command).map(|(key, _)| key).find(|key| sources.get(key).is_some_and(|s| s.not_utf8))?;
    Some(format!(
        "{key}: the value given is not UTF-8, and a configuration file (TOML) holds only UTF-8, so \
         --print-config cannot write it: print the file without {key}, and keep giving it by flag or variable"
    ))
}

/// Appends `text` as comment lines, wrapped.
fn comment(out: &mut String, text: &str) {
    for (n, paragraph) in text.split("\n\n").enumerate() {
        if n > 0 {
            out.push_str("#\n");
        }
        let mut line = String::from("#");
        for word in paragraph.split_whitespace() {
            if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
                out.push_str(&line);
                out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{Parsed, parse};

    fn parsed(args: &[String]) -> Parsed {
        parse(args.iter().map(Into::into).collect()).unwrap()
    }

    /// A value for every setting, none of them the default.
    const EVERY_SETTING: &[(&str, &str)] = &[
        ("listen", "127.0.0.1:0"),
        ("handshake-timeout", "5s"),
        ("idle-timeout", "2m"),
        ("ping-interval", "30s"),
        ("write-timeout", "3s"),
        ("close-timeout", "2s"),
        ("shutdown-timeout", "9s"),
        ("max-message-size", "65536"),
        ("max-frame-size", "32768"),
        ("read-buffer-size", "4096"),
        ("outbox-bytes", "1000000"),
        ("hub-capacity", "100"),
        ("max-head-size", "4096"),
        ("max-headers", "32"),
        ("max-connections", "400"),
        ("max-connections-per-ip", "10"),
        ("max-messages-per-sec", "50"),
        ("message-burst", "60"),
        ("allow-origin", "https://a.example"),
        ("allow-origin", "https://b.example"),
        ("auth-token-file", "/etc/switchboard/tokens"),
        ("jwt-secret-file", "/etc/switchboard/jwt key"),
        ("jwt-name-claim", "name"),
        ("jwt-audience", "chat.example"),
        ("tls-cert", "/etc/switchboard/cert.pem"),
        ("tls-key", "/etc/switchboard/key.pem"),
        ("trust-proxy", "10.0.0.0/8"),
        ("subprotocol", "chat.v1"),
        ("thread-stack-size", "262144"),
        ("spare-threads", "8"),
        ("spare-thread-timeout", "30s"),
        ("max-lifetime", "1h 30m"),
        ("max-handshakes", "100"),
        ("max-handshakes-per-ip", "5"),
        ("handshake-min-rate", "100"),
        ("redis", "rediss://db.example:6380/0"),
        ("redis-password-file", "/run/credentials/redis"),
        ("redis-ca-cert", "/etc/switchboard/redis-ca.pem"),
        ("node-id", "eu-1"),
        ("redis-prefix", "chat\"\\:"),
        ("redis-queue", "100"),
        ("private-metrics", "true"),
        ("log-format", "json"),
        ("scheduling", "batch"),
    ];

    #[test]
    fn every_setting_is_printed_and_read_back_the_same() {
        let mut args = vec!["switchboard".to_owned()];
        for (key, value) in EVERY_SETTING {
            args.extend([format!("--{key}"), (*value).to_owned()]);
        }
        let first = parsed(&args);
        for (key, _) in settings(&Cli::command()) {
            assert!(
                EVERY_SETTING.iter().any(|(set, _)| *set == key),
                "--{key} is missing from EVERY_SETTING"
            );
        }
        let printed = render(&first.sources);
        for (key, _) in EVERY_SETTING {
            assert!(printed.lines().any(|line| line.starts_with(&format!("{key} = "))), "{key}:\n{printed}");
        }
        let second = read_back("print-config", &printed);
        assert_eq!(render(&second.sources), printed);
        assert_eq!(server_settings(second), format!("{:?}", first.cli.server));
    }

    /// `text` written to a file named for `name` and read back with
    /// `--config`.
    fn read_back(name: &str, text: &str) -> Parsed {
        let path = std::env::temp_dir().join(format!("switchboard-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let parsed = parsed(&["switchboard".to_owned(), "--config".to_owned(), path.display().to_string()]);
        std::fs::remove_file(&path).unwrap();
        parsed
    }

    /// The server's settings of `parsed`, as read from its file.
    fn server_settings(parsed: Parsed) -> String {
        let mut server = parsed.cli.server;
        server.config = None;
        format!("{server:?}")
    }

    #[test]
    fn a_value_that_is_not_utf8_is_not_printed() {
        use std::os::unix::ffi::OsStringExt;
        let path = std::ffi::OsString::from_vec(b"/etc/switchboard/caf\xe9".to_vec());
        let sources = parse(vec!["switchboard".into(), "--auth-token-file".into(), path]).unwrap().sources;
        let why = unwritable(&sources).expect("a path that is not UTF-8 cannot be written");
        assert!(why.starts_with("auth-token-file: the value given is not UTF-8"), "{why}");
        assert_eq!(unwritable(&parsed(&["switchboard".to_owned()]).sources), None);
    }

    #[test]
    fn a_lists_entries_are_printed_trimmed_as_the_server_reads_them() {
        let args =
            ["switchboard", "--allow-origin", "https://a.example, https://b.example "].map(str::to_owned);
        let printed = render(&parsed(&args).sources);
        assert!(
            printed.contains("\nallow-origin = [\"https://a.example\", \"https://b.example\"]\n"),
            "{printed}"
        );
    }

    #[test]
    fn text_that_reads_true_is_printed_as_text_and_read_back() {
        let args =
            ["switchboard", "--jwt-name-claim", "true", "--private-metrics", "true"].map(str::to_owned);
        let printed = render(&parsed(&args).sources);
        assert!(printed.contains("\njwt-name-claim = \"true\"\n"), "{printed}");
        assert!(printed.contains("\nprivate-metrics = true\n"), "{printed}");
        assert_eq!(render(&read_back("print-text", &printed).sources), printed);
    }

    #[test]
    fn defaults_are_commented_out_and_read_back_as_defaults() {
        let first = parsed(&["switchboard".to_owned()]);
        let printed = render(&first.sources);
        assert!(printed.contains("\n# max-connections = 10000\n"), "{printed}");
        assert!(printed.contains("\n# idle-timeout = \"1m\"\n"), "{printed}");
        assert!(printed.contains("\n# allow-origin = [\"ORIGIN\"]\n"), "{printed}");
        let set: Vec<&str> =
            printed.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).collect();
        assert!(set.is_empty(), "{set:?}");
        // Uncommented, the defaults make the same settings; the lines with
        // no default hold what would go there, as `"FILE"`, and stay out.
        let placeholder = |value: &str| {
            let value = value.trim_matches(['[', ']', '"']);
            !value.is_empty() && value.chars().all(|c| c.is_ascii_uppercase())
        };
        let uncommented: String = printed
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter_map(|line| line.split_once(" = ").map(|(key, value)| (key, value, line)))
            .filter(|(key, value, _)| {
                key.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !placeholder(value)
            })
            .map(|(_, _, line)| format!("{line}\n"))
            .collect();
        assert!(uncommented.lines().count() >= 25, "{uncommented}");
        assert_eq!(server_settings(read_back("defaults", &uncommented)), format!("{:?}", first.cli.server));
    }

    #[test]
    fn a_password_in_the_redis_url_is_not_printed() {
        let first =
            parsed(&["switchboard".to_owned(), "--redis".to_owned(), "redis://:hunter2@db:6379".to_owned()]);
        let printed = render(&first.sources);
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("\nredis = \"redis://:***@db:6379\"\n"), "{printed}");
    }
}
