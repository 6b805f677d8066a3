//! Where the server's settings come from: its flags, `SWITCHBOARD_*`
//! environment variables, a TOML file (`--config`), and the defaults, each
//! winning over the ones after it.
//!
//! clap does the layering, so that one value parser reads a setting
//! whichever way it came: every flag names its variable (`env` in
//! `args.rs`), which clap reads when the flag is not given, and the file's
//! values become the flags' defaults, which clap takes when neither is.
//!
//! A file's keys are the long flags' names (`max-connections = 400`); a
//! variable is `SWITCHBOARD_` and the name in upper snake case
//! (`SWITCHBOARD_MAX_CONNECTIONS`). `--config` names the file, and so does
//! `SWITCHBOARD_CONFIG`; the file names no other file of settings.
//!
//! What is wrong with a value is told in the words it was given in: the
//! flag and its value, the variable, or the key and the file
//! ([`Sources::describe`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use switchboard::Secret;

use crate::args::Cli;
use crate::flags::FlagError;

/// The variable that holds the Redis password, for those who keep it out of
/// files. It is no flag: a password on the command line is one `ps` shows.
pub const REDIS_PASSWORD_VAR: &str = "SWITCHBOARD_REDIS_PASSWORD";

/// The variable that names the configuration file, as `--config` does.
const CONFIG_VAR: &str = "SWITCHBOARD_CONFIG";

/// Flags that are not settings: they have no key in the file.
const NOT_SETTINGS: [&str; 4] = ["config", "print-config", "help", "version"];

/// The value names of the settings that are numbers, written unquoted in a
/// file.
const NUMBERS: [&str; 4] = ["BYTES", "COUNT", "COMMANDS", "MESSAGES"];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Its flag, on the command line.
    Flag,
    /// This environment variable.
    Env(String),
    /// The configuration file.
    File,
    /// None of them: the default, if it has one.
    Default,
}

/// One setting: where it came from, and its values as written (several for
/// a repeatable flag; none for one without a default, not given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub origin: Origin,
    pub values: Vec<String>,
    /// A number, written unquoted in a file.
    pub numeric: bool,
    /// On or off: `true` or `false`, written bare in a file.
    pub switch: bool,
    /// A flag that may be given more than once: a list in a file.
    pub repeatable: bool,
    /// A value was not UTF-8 (a path, most likely), and is shown with
    /// U+FFFD in its place: a file, which is UTF-8, cannot hold it.
    pub not_utf8: bool,
}

impl Setting {
    /// The values as a TOML value, with a Redis URL's passwords shown as `***`.
    pub fn toml(&self, key: &str) -> String {
        let scalar = |value: &String| {
            let value = Sources::shown(key, value);
            let bare = (self.numeric && value.parse::<i64>().is_ok())
                || (self.switch && (value == "true" || value == "false"));
            if bare { value } else { toml_string(&value) }
        };
        if self.repeatable {
            format!("[{}]", self.values.iter().map(scalar).collect::<Vec<_>>().join(", "))
        } else {
            self.values.first().map(scalar).unwrap_or_default()
        }
    }
}

/// Every setting of the server, by its key (the long flag's name).
#[derive(Debug, Default)]
pub struct Sources {
    file: Option<PathBuf>,
    settings: BTreeMap<String, Setting>,
    /// [`REDIS_PASSWORD_VAR`], if set.
    redis_password: Option<Secret>,
}

/// A command line read with its environment and file.
#[derive(Debug)]
pub struct Parsed {
    pub cli: Cli,
    pub sources: Sources,
}

/// Why the settings could not be read.
#[derive(Debug)]
pub enum ParseError {
    /// From clap, as clap tells it (a help or version request included);
    /// a value that came from a variable or the file is named as such.
    Clap(clap::Error),
    /// The configuration file cannot be read, or holds what is no setting.
    File(FlagError),
}

/// Reads the command line `argv` (the program's name first), the
/// environment, and the configuration file that either names.
///
/// # Errors
///
/// See [`ParseError`].
pub fn parse(argv: Vec<OsString>) -> Result<Parsed, ParseError> {
    let client = argv.get(1).is_some_and(|first| first == "client");
    let file = match config_path(&argv) {
        // The client reads none.
        Some((path, named_by)) if !client => {
            Some(ConfigFile::read(path, &named_by).map_err(ParseError::File)?)
        }
        _ => None,
    };
    let mut command = command(file.as_ref());
    if client {
        // The client has no use for the server's settings, so a server's
        // SWITCHBOARD_* variables, set for the server in the same shell,
        // must not stop it with a value it would never read.
        command = command.mut_args(|arg| arg.env(None));
    }
    let matches = command
        .try_get_matches_from_mut(&argv)
        .map_err(|e| ParseError::Clap(attribute(e, &command, &argv, file.as_ref())))?;
    let cli = Cli::from_arg_matches(&matches).map_err(ParseError::Clap)?;
    let sources = Sources::new(&command, &matches, file);
    Ok(Parsed { cli, sources })
}

/// The configuration file `argv` or the environment names, and which of
/// them named it.
fn config_path(argv: &[OsString]) -> Option<(PathBuf, String)> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            // Without a path, clap says so.
            return args.next().map(|path| (PathBuf::from(path), "--config".to_owned()));
        }
        if let Some(path) = arg.to_str().and_then(|arg| arg.strip_prefix("--config=")) {
            return Some((PathBuf::from(path), "--config".to_owned()));
        }
    }
    std::env::var_os(CONFIG_VAR)
        .filter(|path| !path.is_empty())
        .map(|path| (PathBuf::from(path), CONFIG_VAR.to_owned()))
}

/// The settings' flags, in the order `--help` lists them.
pub fn settings(command: &Command) -> impl Iterator<Item = (&str, &Arg)> {
    command.get_arguments().filter_map(|arg| {
        let key = arg.get_long()?;
        (!NOT_SETTINGS.contains(&key)).then_some((key, arg))
    })
}

/// Returns true if and only if the flag may be given more than once.
fn repeatable(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// Returns true if and only if the setting is a number.
fn numeric(arg: &Arg) -> bool {
    arg.get_value_names().is_some_and(|names| names.iter().any(|name| NUMBERS.contains(&name.as_str())))
}

/// Returns true if and only if the setting is on or off.
fn switch(arg: &Arg) -> bool {
    arg.get_value_names().is_some_and(|names| names.iter().any(|name| name.as_str() == "BOOL"))
}

/// The server's command line, with `file`'s values as the defaults of
/// their flags. (clap moves a flag it changes to the end of its list: the
/// order of `--help` is the declared command's.)
fn command(file: Option<&ConfigFile>) -> Command {
    let mut command = Cli::command();
    let Some(file) = file else { return command };
    for (key, values) in &file.values {
        let id = settings(&command)
            .find(|(long, _)| long == key)
            .map(|(_, arg)| arg.get_id().clone())
            .expect("Bug: the file's keys were checked against the flags");
        let values = values.clone();
        command = command.mut_arg(id, move |arg| arg.default_values(values));
    }
    command
}

/// Names, in a clap error about a value, where the value came from, when
/// that was a variable or the file rather than the flag.
fn attribute(
    mut error: clap::Error,
    command: &Command,
    argv: &[OsString],
    file: Option<&ConfigFile>,
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else { return error };
    // As in `--max-connections <COUNT>`.
    let Some(long) = shown.strip_prefix("--").and_then(|rest| rest.split([' ', '=']).next()) else {
        return error;
    };
    let flag = format!("--{long}");
    let flag_with_value = format!("--{long}=");
    let given = argv
        .iter()
        .skip(1)
        .map(|arg| arg.to_string_lossy())
        .any(|arg| arg == flag.as_str() || arg.starts_with(&flag_with_value));
    let Some((_, arg)) = settings(command).find(|(key, _)| *key == long) else { return error };
    if given {
        return error;
    }
    let variable = arg.get_env().filter(|var| std::env::var_os(var).is_some());
    let source = match (variable, file) {
        (Some(var), _) => format!("{} (environment)", var.to_string_lossy()),
        (None, Some(file)) if file.values.contains_key(long) => {
            format!("{long} in {}", file.path.display())
        }
        _ => return error,
    };
    error.insert(ContextKind::InvalidArg, ContextValue::String(source));
    error
}

/// A configuration file: each key's values as strings, for clap to parse
/// as it parses the flags' values.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    values: BTreeMap<String, Vec<String>>,
}

impl ConfigFile {
    /// Reads the TOML file at `path`, which `named_by` (`--config`, or the
    /// variable) named.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not TOML, or holds a key that is no
    /// setting or a value of the wrong kind; the error names the file and
    /// the key.
    fn read(path: PathBuf, named_by: &str) -> Result<ConfigFile, FlagError> {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| FlagError::from(format!("{named_by} {}: cannot read it: {e}", path.display())))?;
        ConfigFile::parse(path, &text)
    }

    /// Reads `text`, the contents of the file at `path`.
    fn parse(path: PathBuf, text: &str) -> Result<ConfigFile, FlagError> {
        let in_file = |problem: &str| FlagError::from(format!("{}: {problem}", path.display()));
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| in_file(&format!("not TOML: {}", e.to_string().trim())))?;
        let command = Cli::command();
        let mut values = BTreeMap::new();
        for (key, value) in table {
            let Some((_, arg)) = settings(&command).find(|(long, _)| *long == key) else {
                return Err(in_file(&unknown_key(&command, &key)));
            };
            let wrong = |problem: &str| in_file(&format!("{key}: {problem}"));
            let scalar = |value: &toml::Value| match value {
                toml::Value::String(text) => Ok(text.clone()),
                toml::Value::Integer(n) => Ok(n.to_string()),
                toml::Value::Boolean(b) if switch(arg) => Ok(b.to_string()),
                toml::Value::Table(_) => Err(wrong("is a table, and settings are not grouped in tables")),
                _ => Err(wrong("must be text in quotes, or a whole number (true or false for a switch)")),
            };
            let list = match &value {
                toml::Value::Array(items) if repeatable(arg) => {
                    items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?
                }
                toml::Value::Array(_) => return Err(wrong("takes one value, not a list")),
                value => vec![scalar(value)?],
            };
            values.insert(key, list);
        }
        Ok(ConfigFile { path, values })
    }
}

/// Why `key` is not a setting, and what may have been meant.
fn unknown_key(command: &Command, key: &str) -> String {
    if NOT_SETTINGS.contains(&key) {
        return format!("`{key}` is a flag, not a setting a file can hold");
    }
    let dashed = key.replace('_', "-");
    if settings(command).any(|(long, _)| long == dashed) {
        return format!("unknown key `{key}`: did you mean `{dashed}`? (keys are written with dashes)");
    }
    format!("unknown key `{key}`: each key is a flag's name without its dashes (see switchboard --help)")
}

impl Sources {
    /// Where each setting of `matches` came from.
    fn new(command: &Command, matches: &ArgMatches, file: Option<ConfigFile>) -> Sources {
        let settings = settings(command)
            .map(|(key, arg)| {
                let id = arg.get_id().as_str();
                let raw: Vec<&std::ffi::OsStr> =
                    matches.get_raw(id).map(Iterator::collect).unwrap_or_default();
                // A list's entries are trimmed as the server reads them
                // ("a, b" in a variable is two), and are shown so.
                let list = repeatable(arg);
                let values = raw
                    .iter()
                    .map(|value| value.to_string_lossy())
                    .map(|value| if list { value.trim().to_owned() } else { value.into_owned() })
                    .collect();
                let origin = match matches.value_source(id) {
                    Some(ValueSource::CommandLine) => Origin::Flag,
                    Some(ValueSource::EnvVariable) => Origin::Env(
                        arg.get_env().map(|var| var.to_string_lossy().into_owned()).unwrap_or_default(),
                    ),
                    _ if file.as_ref().is_some_and(|file| file.values.contains_key(key)) => Origin::File,
                    _ => Origin::Default,
                };
                let setting = Setting {
                    origin,
                    values,
                    numeric: numeric(arg),
                    switch: switch(arg),
                    repeatable: list,
                    not_utf8: raw.iter().any(|value| value.to_str().is_none()),
                };
                (key.to_owned(), setting)
            })
            .collect();
        let redis_password = std::env::var_os(REDIS_PASSWORD_VAR)
            .map(|password| Secret::new(std::os::unix::ffi::OsStringExt::into_vec(password)));
        Sources { file: file.map(|file| file.path), settings, redis_password }
    }

    /// The setting of `key`.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.get(key)
    }

    /// Returns true if and only if `key` was given, one way or another.
    pub fn is_set(&self, key: &str) -> bool {
        self.get(key).is_some_and(|setting| setting.origin != Origin::Default)
    }

    /// The Redis password [`REDIS_PASSWORD_VAR`] holds, if it is set.
    pub fn redis_password(&self) -> Option<&Secret> {
        self.redis_password.as_ref()
    }

    /// Returns true if and only if the Redis URL given holds a password.
    pub fn redis_url_has_password(&self) -> bool {
        self.get("redis")
            .is_some_and(|redis| redis.values.iter().any(|url| switchboard::redis_url_has_password(url)))
    }

    /// Where the Redis password was given, as an error message names it:
    /// `--redis-password-file` and its value, or the variable; `None` if
    /// neither gave one.
    pub fn describe_redis_password(&self) -> Option<String> {
        if self.is_set("redis-password-file") {
            Some(self.describe("redis-password-file"))
        } else {
            self.redis_password.is_some().then(|| format!("{REDIS_PASSWORD_VAR} (not shown)"))
        }
    }

    /// The value of `key` as it may be shown: a Redis URL's passwords
    /// are replaced by `***`.
    pub fn shown(key: &str, value: &str) -> String {
        if key == "redis" { switchboard::redact_redis_url(value) } else { value.to_owned() }
    }

    /// `key`'s setting in the words it was given in: `--flag value`,
    /// `VARIABLE=value`, `key = value in FILE`, or `--flag (the default)`.
    pub fn describe(&self, key: &str) -> String {
        let Some(setting) = self.get(key) else { return format!("--{key}") };
        let shown: Vec<String> = setting.values.iter().map(|value| Sources::shown(key, value)).collect();
        match &setting.origin {
            Origin::Flag => format!("--{key} {}", shown.join(",")),
            Origin::Env(var) => format!("{var}={}", shown.join(",")),
            Origin::File => {
                let file = self.file.as_deref().unwrap_or(Path::new("the configuration file"));
                format!("{key} = {} in {}", setting.toml(key), file.display())
            }
            Origin::Default if shown.is_empty() => format!("--{key}"),
            Origin::Default => format!("--{key} {} (the default)", shown.join(",")),
        }
    }

    /// The error `problem` with `key`'s setting, in its own words.
    pub fn error(&self, key: &str, problem: &str) -> FlagError {
        FlagError::from(format!("{}: {problem}", self.describe(key)))
    }
}

/// `text` as a TOML string, quoted and escaped.
pub fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The `SWITCHBOARD_*` variables among `names` that set nothing, as a
/// misspelt one would: a file's unknown keys are refused, but the
/// environment holds variables of other programs too, so these are only
/// warned about.
pub fn unknown_variables(names: impl Iterator<Item = OsString>) -> Vec<String> {
    let command = Cli::command();
    let known = |name: &str| {
        name == REDIS_PASSWORD_VAR
            || name == crate::allocator::RESTARTED
            || command.get_arguments().any(|arg| arg.get_env().is_some_and(|var| var == name))
    };
    let mut unknown: Vec<String> = names
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.starts_with("SWITCHBOARD_") && !known(name))
        .collect();
    unknown.sort();
    unknown
}

/// The variable that sets `key`.
#[cfg(test)]
pub fn variable(key: &str) -> String {
    format!("SWITCHBOARD_{}", key.to_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `text` in a directory of this test's own.
    fn file(test: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("switchboard-sources-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchboard.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn parsed(args: &[&str]) -> Result<Parsed, ParseError> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn file_error(text: &str) -> String {
        match ConfigFile::parse(PathBuf::from("/etc/switchboard.toml"), text) {
            Err(e) => e.to_string(),
            Ok(file) => panic!("{text:?} was taken: {file:?}"),
        }
    }

    #[test]
    fn the_file_sets_defaults_and_flags_win() {
        let path = file(
            "defaults",
            "max-connections = 400\nidle-timeout = \"2m\"\nallow-origin = [\"https://a\", \"https://b\"]\n",
        );
        let path = path.to_str().unwrap();
        let both = parsed(&["switchboard", "--config", path, "--idle-timeout", "90s"]).unwrap();
        let server = &both.cli.server;
        assert_eq!(server.max_connections, 400);
        assert_eq!(*server.idle_timeout, std::time::Duration::from_secs(90));
        assert_eq!(server.allow_origins, ["https://a", "https://b"]);
        let sources = &both.sources;
        assert_eq!(sources.get("max-connections").unwrap().origin, Origin::File);
        assert_eq!(sources.get("idle-timeout").unwrap().origin, Origin::Flag);
        assert_eq!(sources.get("max-headers").unwrap().origin, Origin::Default);
        assert_eq!(sources.describe("max-connections"), format!("max-connections = 400 in {path}"));
        assert_eq!(sources.describe("idle-timeout"), "--idle-timeout 90s");
        assert_eq!(sources.describe("max-headers"), "--max-headers 64 (the default)");
        assert_eq!(
            sources.describe("allow-origin"),
            format!("allow-origin = [\"https://a\", \"https://b\"] in {path}")
        );
        // A list on the command line replaces the file's, rather than adding to it.
        let replaced = parsed(&["switchboard", "--config", path, "--allow-origin", "https://c"]).unwrap();
        assert_eq!(replaced.cli.server.allow_origins, ["https://c"]);
        // `--config=PATH` names the file too.
        let named = parsed(&["switchboard", &format!("--config={path}")]).unwrap();
        assert_eq!(named.cli.server.max_connections, 400);
    }

    #[test]
    fn a_settings_needs_are_met_from_any_source() {
        let path = file("needs", "redis = \"redis://db:6379\"\n");
        let both = parsed(&["switchboard", "--config", path.to_str().unwrap(), "--node-id", "eu-1"]).unwrap();
        let config = both.cli.server.into_config(&both.sources).unwrap();
        assert_eq!(config.backplane.unwrap().node_id, "eu-1");
    }

    #[test]
    fn a_bad_value_in_the_file_is_named_by_its_key_and_file() {
        let path = file("bad-value", "max-connections = \"many\"\n");
        let path = path.to_str().unwrap();
        let Err(ParseError::Clap(error)) = parsed(&["switchboard", "--config", path]) else {
            panic!("\"many\" connections were taken");
        };
        let message = error.to_string();
        assert!(message.contains(&format!("'max-connections in {path}'")), "{message}");
        // The same value given as a flag is the flag's.
        let Err(ParseError::Clap(error)) =
            parsed(&["switchboard", "--config", path, "--max-connections", "x"])
        else {
            panic!("x connections were taken");
        };
        assert!(error.to_string().contains("'--max-connections <COUNT>'"), "{error}");
    }

    #[test]
    fn what_is_no_setting_is_refused_with_the_key_and_the_file() {
        assert_eq!(
            file_error("max-conections = 4"),
            "/etc/switchboard.toml: unknown key `max-conections`: each key is a flag's name without its \
             dashes (see switchboard --help)"
        );
        assert_eq!(
            file_error("max_connections = 4"),
            "/etc/switchboard.toml: unknown key `max_connections`: did you mean `max-connections`? (keys \
             are written with dashes)"
        );
        assert!(file_error("config = \"other.toml\"").contains("`config` is a flag"));
        assert!(file_error("print-config = true").contains("`print-config` is a flag"));
        assert_eq!(
            file_error("listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]"),
            "/etc/switchboard.toml: listen: takes one value, not a list"
        );
        assert!(file_error("max-connections = 1.5").contains("max-connections: must be text in quotes"));
        assert!(file_error("allow-origin = [true]").contains("allow-origin: must be text in quotes"));
        assert!(file_error("[limits]\nmax-connections = 4").contains("unknown key `limits`"));
        assert!(file_error("listen = ").starts_with("/etc/switchboard.toml: not TOML: "));
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named_with_what_named_it() {
        let Err(ParseError::File(error)) =
            parsed(&["switchboard", "--config", "/nonexistent/switchboard.toml"])
        else {
            panic!("a missing file was taken");
        };
        assert!(
            error.to_string().starts_with("--config /nonexistent/switchboard.toml: cannot read it"),
            "{error}"
        );
    }

    #[test]
    fn the_client_reads_no_configuration_file() {
        let line = ["switchboard", "client", "ws://127.0.0.1:1/echo"];
        assert!(config_path(&line.map(OsString::from)).is_none());
        assert!(parsed(&line).unwrap().cli.command.is_some());
    }

    #[test]
    fn unknown_variables_are_found() {
        let names =
            ["SWITCHBOARD_MAX_CONECTIONS", "SWITCHBOARD_LISTEN", "SWITCHBOARD_REDIS_PASSWORD", "HOME"];
        let unknown = unknown_variables(names.into_iter().map(OsString::from));
        assert_eq!(unknown, ["SWITCHBOARD_MAX_CONECTIONS"]);
        assert!(unknown_variables(["SWITCHBOARD_CONFIG"].into_iter().map(OsString::from)).is_empty());
    }

    #[test]
    fn a_redis_url_is_described_without_its_password() {
        let given = parsed(&["switchboard", "--redis", "redis://app:hunter2@db:6379"]).unwrap();
        assert_eq!(given.sources.describe("redis"), "--redis redis://app:***@db:6379");
    }
}
