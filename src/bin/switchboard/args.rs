//! The command line, declared with clap's derive: the server's options, and
//! their conversion into a [`Config`]; the `client` subcommand's options live
//! beside its code in `client.rs`.
//!
//! Every default shown by `--help` is read from `Config::default()`, so the
//! two cannot drift apart.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use humantime::Duration;

use crate::flags::FlagError;
use crate::logging::LogFormat;
use crate::scheduling::Scheduling;
use crate::sources::{REDIS_PASSWORD_VAR, Sources};
use switchboard::{Access, BackplaneConfig, Config, IpNet, Limits, Secret, Timeouts, TlsConfig, Token};

/// A WebSocket server: rooms at /ws/<room>, an echo at /echo, a chat page at /,
/// and /healthz, /metrics and /stats, all on one port. `switchboard client`
/// talks to it, or to any WebSocket server.
///
/// Logging follows RUST_LOG (default `info`); `RUST_LOG=debug` shows every
/// connection.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Without a subcommand, switchboard serves.
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// What switchboard can do besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connects to one or more WebSocket URLs at once: lines typed on stdin are
    /// sent to every connection, or to one with `@NAME text`; every message
    /// received is printed with the name of its connection.
    Client(crate::client::ClientArgs),
}

/// The server's options. Each long flag is also a key of the configuration
/// file, by the same name, and an environment variable, `SWITCHBOARD_` and
/// its name in upper snake case (see `sources.rs`), but for `--config`,
/// which names the file, and `--print-config`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// A TOML file of settings: each key is a flag's name, as in `max-connections = 400`.
    /// Flags and SWITCHBOARD_* variables win over it; --print-config writes one to start from.
    #[arg(long, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the configuration these flags, variables and file make, as a file for
    /// --config, and exit. Secrets are not printed: passwords in --redis show as ***.
    #[arg(long)]
    pub print_config: bool,

    /// Address to listen on (port 0 picks a free port; [::] takes IPv4 clients too).
    #[arg(long, env = "SWITCHBOARD_LISTEN", value_name = "ADDR", default_value_t = Config::default().listen, value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// The whole HTTP request head must arrive within this time, or 408.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, default_value_t = Timeouts::default().handshake.into())]
    pub handshake_timeout: Duration,

    /// Close a WebSocket client that sends nothing, pongs included, for this long (1001).
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, default_value_t = Timeouts::default().idle.into())]
    pub idle_timeout: Duration,

    /// Ping a client that has sent nothing for this long; must be less than --idle-timeout.
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", value_name = "DURATION", value_parser = parse_duration, default_value_t = Timeouts::default().ping_interval.into())]
    pub ping_interval: Duration,

    /// Drop a client whose socket accepts no bytes for this long while bytes wait for it.
    #[arg(long, env = "SWITCHBOARD_WRITE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, default_value_t = Timeouts::default().write.into())]
    pub write_timeout: Duration,

    /// After sending a close frame, wait this long for the client's reply.
    #[arg(long, env = "SWITCHBOARD_CLOSE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, default_value_t = Timeouts::default().close.into())]
    pub close_timeout: Duration,

    /// On Ctrl-C or SIGTERM, the bound on the whole graceful shutdown.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, default_value_t = Timeouts::default().shutdown.into())]
    pub shutdown_timeout: Duration,

    /// Largest message in bytes, after reassembling fragments (larger: close 1009).
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_SIZE", value_name = "BYTES", default_value_t = default_max_message_size())]
    pub max_message_size: usize,

    /// Largest single frame payload in bytes (larger: close 1009).
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_SIZE", value_name = "BYTES", default_value_t = default_max_frame_size())]
    pub max_frame_size: usize,

    /// Read buffer per connection in bytes, 256 to 1 MiB (tungstenite's
    /// default is 128 KiB).
    #[arg(long, env = "SWITCHBOARD_READ_BUFFER_SIZE", value_name = "BYTES", default_value_t = Config::default().websocket.read_buffer_size)]
    pub read_buffer_size: usize,

    /// Bytes queued per client before it is closed as a slow consumer (1008);
    /// must hold the largest message.
    #[arg(long, env = "SWITCHBOARD_OUTBOX_BYTES", value_name = "BYTES", default_value_t = Limits::default().outbox_bytes)]
    pub outbox_bytes: usize,

    /// Commands queued for the hub before publishing clients wait (at most
    /// 1048576).
    #[arg(long, env = "SWITCHBOARD_HUB_CAPACITY", value_name = "COMMANDS", default_value_t = Limits::default().hub_capacity)]
    pub hub_capacity: usize,

    /// Largest HTTP request head in bytes, 256 to 1 MiB (larger: 431).
    #[arg(long, env = "SWITCHBOARD_MAX_HEAD_SIZE", value_name = "BYTES", default_value_t = Limits::default().max_head_size)]
    pub max_head_size: usize,

    /// Most header fields in a request head, 8 to 1024 (more: 431).
    #[arg(long, env = "SWITCHBOARD_MAX_HEADERS", value_name = "COUNT", default_value_t = Limits::default().max_headers)]
    pub max_headers: usize,

    /// Connections open at once, all clients together (over: 503, before any thread is spent).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", value_name = "COUNT", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,

    /// Connections open at once from one client address, an IPv6 /64 counting as one
    /// (over: 429); 0 for no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP", value_name = "COUNT", default_value_t = Limits::default().max_connections_per_ip)]
    pub max_connections_per_ip: usize,

    /// Messages and pings one connection may send per second, sustained (over: close 1008);
    /// 0 for no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGES_PER_SEC", value_name = "COUNT", default_value_t = Limits::default().max_messages_per_sec)]
    pub max_messages_per_sec: u32,

    /// Messages a connection may send at once above --max-messages-per-sec.
    #[arg(long, env = "SWITCHBOARD_MESSAGE_BURST", value_name = "COUNT", default_value_t = Limits::default().message_burst)]
    pub message_burst: u32,

    /// An origin allowed to open a WebSocket from a browser, as in https://chat.example.com,
    /// or * for any; repeatable, or comma-separated. Without it a browser must come from the
    /// same origin (else 403).
    #[arg(
        long = "allow-origin",
        env = "SWITCHBOARD_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ',',
        value_parser = trimmed
    )]
    pub allow_origins: Vec<String>,

    /// A file of bearer tokens, one per line, required at the upgrade and for /rooms/
    /// (missing: 401, wrong: 403). Read from Authorization: Bearer, ?access_token= or the
    /// access_token cookie. A line may start with a name and a space: the identity of the
    /// token's connections.
    #[arg(long, env = "SWITCHBOARD_AUTH_TOKEN_FILE", value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// A file holding the HS256 key of JSON Web Tokens accepted at the upgrade, where
    /// tokens are read (signature, exp and nbf checked, with 30 s of leeway for clock
    /// skew; expired, not yet valid or without exp: 403). A token's name claim
    /// (--jwt-name-claim) is the name rooms show for its holder.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// The JWT claim that names the user to others, instead of a name the client picks;
    /// a token without it as a string gets 403. Default: sub.
    #[arg(long, env = "SWITCHBOARD_JWT_NAME_CLAIM", value_name = "CLAIM")]
    pub jwt_name_claim: Option<String>,

    /// The audience this server is, as a JWT's aud claim names it: a token without aud,
    /// or for other audiences only, gets 403. Without it, a token with aud gets 403.
    #[arg(long, env = "SWITCHBOARD_JWT_AUDIENCE", value_name = "AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// /metrics and /stats need the credentials an upgrade needs (missing: 401,
    /// wrong: 403), as Authorization: Bearer (Prometheus: authorization.credentials_file);
    /// needs --auth-token-file or --jwt-secret-file. /healthz stays open.
    #[arg(
        long,
        env = "SWITCHBOARD_PRIVATE_METRICS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub private_metrics: bool,

    /// The certificate chain (PEM) to serve https:// and wss:// with; needs --tls-key.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// A proxy network (CIDR, or one address) whose X-Forwarded-For is believed, for
    /// per-address limits and logs; repeatable, or comma-separated.
    #[arg(
        long = "trust-proxy",
        env = "SWITCHBOARD_TRUST_PROXY",
        value_name = "CIDR",
        value_parser = parse_network,
        value_delimiter = ','
    )]
    pub trust_proxies: Vec<IpNet>,

    /// A subprotocol the server speaks (Sec-WebSocket-Protocol); repeatable, or
    /// comma-separated. The first one the client offers that is listed here is chosen: the
    /// client's order decides.
    #[arg(
        long = "subprotocol",
        env = "SWITCHBOARD_SUBPROTOCOL",
        value_name = "NAME",
        value_delimiter = ',',
        value_parser = trimmed
    )]
    pub subprotocols: Vec<String>,

    /// Stack size of each connection thread, in bytes: 64 KiB to 8 MiB.
    #[arg(long, env = "SWITCHBOARD_THREAD_STACK_SIZE", value_name = "BYTES", default_value_t = Config::default().thread_stack_size)]
    pub thread_stack_size: usize,

    /// Connection threads kept parked for the next clients once theirs have
    /// gone (0: a new thread for every client).
    #[arg(long, env = "SWITCHBOARD_SPARE_THREADS", value_name = "COUNT", default_value_t = Limits::default().spare_threads)]
    pub spare_threads: usize,

    /// How long a parked connection thread waits for a client before it ends.
    #[arg(long, env = "SWITCHBOARD_SPARE_THREAD_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, default_value_t = Timeouts::default().spare_thread.into())]
    pub spare_thread_timeout: Duration,

    /// Close a WebSocket open this long with 1001 (each up to a tenth
    /// sooner, so that clients do not all reconnect at once). Off by default.
    #[arg(long, env = "SWITCHBOARD_MAX_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    pub max_lifetime: Option<Duration>,

    /// Connections still in their handshake (request head not yet read), all
    /// clients together. One that arrives past it, or when the server is
    /// full, takes the place of the oldest still in its handshake, which gets
    /// 408: half-open sockets give way, established connections never do.
    #[arg(long, env = "SWITCHBOARD_MAX_HANDSHAKES", value_name = "COUNT", default_value_t = Limits::default().max_handshakes)]
    pub max_handshakes: usize,

    /// Connections from one address (IPv6: per /64) stalled in their
    /// handshake for more than a second; past it, 429. 0 turns the limit off.
    #[arg(long, env = "SWITCHBOARD_MAX_HANDSHAKES_PER_IP", value_name = "COUNT", default_value_t = Limits::default().max_handshakes_per_ip)]
    pub max_handshakes_per_ip: usize,

    /// The slowest a request head (or a TLS handshake) may arrive after its
    /// first second, in bytes per second; slower gets 408 (a TLS handshake
    /// is closed). 0 turns the rule off.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_MIN_RATE", value_name = "BYTES", default_value_t = Limits::default().handshake_min_rate)]
    pub handshake_min_rate: u32,

    /// Share rooms with other nodes through Redis pub/sub at this URL, as in
    /// redis://127.0.0.1:6379, redis://user@host:6379/0 or rediss://host:6380 (TLS).
    /// Without it the server is a single node and needs no other service. The password
    /// is best given with --redis-password-file or SWITCHBOARD_REDIS_PASSWORD, not in
    /// the URL, where `ps` shows it. Redis refusing it at start stops the start.
    #[arg(
        long = "redis",
        env = "SWITCHBOARD_REDIS",
        hide_env_values = true,
        value_name = "URL",
        help_heading = "More than one node"
    )]
    pub redis: Option<String>,

    /// A file holding the Redis password (one line); the variable SWITCHBOARD_REDIS_PASSWORD
    /// may hold it instead.
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_PASSWORD_FILE",
        value_name = "FILE",
        help_heading = "More than one node"
    )]
    pub redis_password_file: Option<PathBuf>,

    /// The CA certificates (PEM) a rediss:// server's certificate must chain to, instead
    /// of the system's roots.
    #[arg(long, env = "SWITCHBOARD_REDIS_CA_CERT", value_name = "FILE", help_heading = "More than one node")]
    pub redis_ca_cert: Option<PathBuf>,

    /// This node's name in the messages it publishes (1 to 64 of A-Z a-z 0-9 . _ : -);
    /// unique per node. [default: 16 random hex digits, new at every start]
    #[arg(long, env = "SWITCHBOARD_NODE_ID", value_name = "ID", help_heading = "More than one node")]
    pub node_id: Option<String>,

    /// Every room's Redis channel is this prefix, a slash and the room name; nodes that
    /// share rooms use the same one, other deployments on the same Redis another (no slash).
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_PREFIX",
        value_name = "PREFIX",
        default_value_t = default_backplane().channel_prefix,
        help_heading = "More than one node"
    )]
    pub redis_prefix: String,

    /// Room messages waiting to be published to Redis, at most 1048576 (and
    /// at most 64 MiB of them); past it, a message is delivered on this node
    /// only and counted as not relayed. Its slots are made at the start,
    /// about 56 bytes each.
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_QUEUE",
        value_name = "MESSAGES",
        default_value_t = default_backplane().publish_queue,
        help_heading = "More than one node"
    )]
    pub redis_queue: usize,

    /// How log lines are written: text for people, or json (one object
    /// per line: time, level, target, message) for a log pipeline.
    /// RUST_LOG chooses what is logged.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How the server's threads are scheduled: inherit (the policy the
    /// server was started with, say by chrt) or batch (Linux's
    /// SCHED_BATCH: a thread woken by its client does not take the core
    /// from the one running; more connections per second of CPU on a core
    /// the server has to itself, but beside any other busy process its
    /// threads wait out that process's turns).
    #[arg(long, env = "SWITCHBOARD_SCHEDULING", value_name = "POLICY", value_enum, default_value_t)]
    pub scheduling: Scheduling,
}

/// The backplane's defaults, for `--help`.
fn default_backplane() -> BackplaneConfig {
    BackplaneConfig::new(String::new())
}

fn default_max_message_size() -> usize {
    Config::default().websocket.max_message_size.expect("Bug: the default has a message limit")
}

fn default_max_frame_size() -> usize {
    Config::default().websocket.max_frame_size.expect("Bug: the default has a frame limit")
}

/// An entry of a comma-separated list, without the spaces around it: "a,
/// b" in the environment lists two.
fn trimmed(text: &str) -> Result<String, std::convert::Infallible> {
    Ok(text.trim().to_owned())
}

/// A CIDR block, or a single address as its own block.
fn parse_network(text: &str) -> Result<IpNet, String> {
    // As a list of origins: "a, b" in the environment lists two.
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is neither a CIDR block nor an address"))
}

/// A duration as people write them: `30s`, `500ms`, `1m 30s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<Duration>().map_err(|_| {
        format!("`{text}` is not a duration: write a number and a unit, as 30s, 500ms or 1m 30s")
    })
}

/// An address and port to listen on; a host name is looked up, and its first
/// address taken.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let not_an_address =
        || format!("`{text}` is not an address and port, as 127.0.0.1:9001, [::]:9001 or localhost:9001");
    let (host, port) = text.rsplit_once(':').ok_or_else(not_an_address)?;
    let port: u16 = port.parse().map_err(|_| not_an_address())?;
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("`{host}` in `{text}` is not a host name this machine can look up"))
}

/// Reads a token file, which `what` names: a token a line, or a name, a
/// space and a token (a bearer token holds no spaces). A name is what the
/// token's connections go by; an unnamed one goes by its place.
fn read_tokens(path: &Path, what: &str) -> Result<Vec<Token>, FlagError> {
    let mut tokens = Vec::new();
    for (n, line) in secret_lines(path, what)? {
        let token = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [secret] => Token::new(secret),
            [name, secret] => Token::named(name, secret),
            _ => {
                let problem = "holds more than a name and a token (a token holds no spaces)";
                return Err(FlagError::from(format!("{what}: the token on line {n} {problem}")));
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// Reads a secret file, which `what` names (`--auth-token-file PATH`, or
/// however it was given): its lines, trimmed, each with its number, but
/// for blank lines and `#` comments. A file with nothing in it is an error:
/// it would otherwise silently turn credentials off.
fn secret_lines(path: &Path, what: &str) -> Result<Vec<(usize, String)>, FlagError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        FlagError::from(match e.kind() {
            std::io::ErrorKind::InvalidData => format!(
                "{what}: the file is not text; a secret is a line of text (write a random one as hex: openssl rand -hex 32)"
            ),
            _ => format!("{what}: cannot read it: {e}"),
        })
    })?;
    let secrets: Vec<(usize, String)> = (1..)
        .zip(text.lines().map(str::trim))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| (n, line.to_owned()))
        .collect();
    if secrets.is_empty() {
        let problem = "the file holds no secret (one per line; lines that start with # are comments)";
        return Err(FlagError::from(format!("{what}: {problem}")));
    }
    Ok(secrets)
}

/// Reads a password file, which `what` names: the whole of its one line, as
/// it is (spaces and `#` included), but for the line break that ends it.
fn read_password(path: &Path, what: &str) -> Result<Secret, FlagError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| FlagError::from(format!("{what}: cannot read it: {e}")))?;
    let password =
        text.strip_suffix('\n').map_or(text.as_str(), |line| line.strip_suffix('\r').unwrap_or(line));
    if password.contains('\n') {
        return Err(FlagError::from(format!("{what}: the file holds more than one line; a password is one")));
    }
    Ok(Secret::new(password))
}

/// The settings that mean something only beside another, and that other.
const NEEDS: [(&str, &str); 7] = [
    ("tls-cert", "tls-key"),
    ("tls-key", "tls-cert"),
    ("node-id", "redis"),
    ("redis-prefix", "redis"),
    ("redis-queue", "redis"),
    ("redis-password-file", "redis"),
    ("redis-ca-cert", "redis"),
];

/// The files of credentials and the certificate, each with its setting as
/// the user gave it: read at start, and again on SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct Files {
    auth_token_file: Option<(PathBuf, String)>,
    jwt_secret_file: Option<(PathBuf, String)>,
    /// The certificate chain and the key, and both settings in words.
    tls: Option<(PathBuf, PathBuf, String)>,
}

/// How the user named `file`, if it was named.
fn setting_of(file: &Option<(PathBuf, String)>) -> Option<&str> {
    file.as_ref().map(|(_, setting)| setting.as_str())
}

/// What [`Files`] hold.
pub struct CredentialFiles {
    pub tokens: Vec<Token>,
    pub jwt_secret: Option<Secret>,
    pub jwt_previous_secrets: Vec<Secret>,
    pub tls: Option<TlsConfig>,
}

impl Files {
    /// Reads every file named; an error names the setting that named it.
    pub fn read(&self) -> Result<CredentialFiles, FlagError> {
        let tokens = match &self.auth_token_file {
            Some((path, setting)) => read_tokens(path, setting)?,
            None => Vec::new(),
        };
        // One key a line: the current one, then any still taken while a
        // rotation retires them.
        let mut jwt_keys = match &self.jwt_secret_file {
            Some((path, setting)) => secret_lines(path, setting)?,
            None => Vec::new(),
        }
        .into_iter()
        .map(|(_, key)| Secret::new(key));
        let jwt_secret = jwt_keys.next();
        let jwt_previous_secrets = jwt_keys.collect();
        let tls = match &self.tls {
            Some((cert, key, settings)) => Some(
                TlsConfig::from_pem_files(cert, key)
                    .map_err(|e| FlagError::from(format!("{settings}: {}", switchboard::error_chain(&e))))?,
            ),
            None => None,
        };
        Ok(CredentialFiles { tokens, jwt_secret, jwt_previous_secrets, tls })
    }

    /// The server's refusal of what these files held, named by the setting
    /// that named the file, with its causes: what the log says when a
    /// reload is refused.
    pub fn explain(&self, error: &switchboard::Error) -> FlagError {
        use switchboard::{Error, error_chain};
        let (setting, problem) = match error {
            Error::Config { field: "access.tokens", problem } => {
                (setting_of(&self.auth_token_file), problem.to_string())
            }
            Error::Config { field: "access.jwt_secret" | "access.jwt_previous_secrets", problem } => {
                (setting_of(&self.jwt_secret_file), problem.to_string())
            }
            Error::Tls { .. } => {
                (self.tls.as_ref().map(|(_, _, settings)| settings.as_str()), error_chain(error))
            }
            other => (None, error_chain(other)),
        };
        FlagError::from(match setting {
            Some(setting) => format!("{setting}: {problem}"),
            None => problem,
        })
    }

    /// What a reload of these files replaces, in words.
    pub fn describe(&self, read: &CredentialFiles) -> String {
        let mut what = Vec::new();
        if self.auth_token_file.is_some() {
            let n = read.tokens.len();
            what.push(format!("{n} token{}", if n == 1 { "" } else { "s" }));
        }
        if self.jwt_secret_file.is_some() {
            match read.jwt_previous_secrets.len() {
                0 => what.push("the JWT key".to_owned()),
                n => what.push(format!("the JWT key and {n} previous one{}", if n == 1 { "" } else { "s" })),
            }
        }
        if self.tls.is_some() {
            what.push("the certificate and key".to_owned());
        }
        if what.is_empty() { "nothing (no file to read)".to_owned() } else { what.join(", ") }
    }
}

impl ServerArgs {
    /// The files these arguments name, as [`Files`] reads them.
    pub fn credential_files(&self, sources: &Sources) -> Files {
        let named =
            |path: &Option<PathBuf>, key: &str| path.clone().map(|path| (path, sources.describe(key)));
        Files {
            auth_token_file: named(&self.auth_token_file, "auth-token-file"),
            jwt_secret_file: named(&self.jwt_secret_file, "jwt-secret-file"),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some((
                    cert.clone(),
                    key.clone(),
                    format!("{} and {}", sources.describe("tls-cert"), sources.describe("tls-key")),
                )),
                _ => None,
            },
        }
    }

    /// The library configuration these arguments describe; `sources`
    /// tells how each was given, for the errors.
    ///
    /// # Errors
    ///
    /// When a setting is given without one it needs, or a token, key,
    /// password or certificate file cannot be read or is empty: the error
    /// names the setting as it was given.
    pub fn into_config(self, sources: &Sources) -> Result<Config, FlagError> {
        if let Some((setting, needed)) =
            NEEDS.iter().find(|(setting, needed)| sources.is_set(setting) && !sources.is_set(needed))
        {
            return Err(sources.error(setting, &format!("needs --{needed} too")));
        }
        if sources.redis_password().is_some() && self.redis.is_none() {
            return Err(FlagError::from(format!("{REDIS_PASSWORD_VAR} is set: it needs --redis too")));
        }
        let defaults = Config::default();
        let CredentialFiles { tokens, jwt_secret, jwt_previous_secrets, tls } =
            self.credential_files(sources).read()?;
        let redis_password = match (&self.redis_password_file, sources.redis_password()) {
            (Some(_), Some(_)) => {
                let problem = format!("{REDIS_PASSWORD_VAR} holds a password too: give it one way");
                return Err(sources.error("redis-password-file", &problem));
            }
            (Some(path), None) => Some(read_password(path, &sources.describe("redis-password-file"))?),
            (None, password) => password.cloned(),
        };
        let redis_ca = match &self.redis_ca_cert {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| sources.error("redis-ca-cert", &format!("cannot read it: {e}")))?,
            ),
            None => None,
        };
        let config = Config {
            listen: self.listen,
            timeouts: Timeouts {
                handshake: self.handshake_timeout.into(),
                idle: self.idle_timeout.into(),
                ping_interval: self.ping_interval.into(),
                write: self.write_timeout.into(),
                close: self.close_timeout.into(),
                shutdown: self.shutdown_timeout.into(),
                spare_thread: self.spare_thread_timeout.into(),
                max_lifetime: self.max_lifetime.map(Into::into),
            },
            limits: Limits {
                max_head_size: self.max_head_size,
                max_headers: self.max_headers,
                outbox_bytes: self.outbox_bytes,
                hub_capacity: self.hub_capacity,
                max_connections: self.max_connections,
                max_connections_per_ip: self.max_connections_per_ip,
                max_messages_per_sec: self.max_messages_per_sec,
                message_burst: self.message_burst,
                spare_threads: self.spare_threads,
                max_handshakes: self.max_handshakes,
                max_handshakes_per_ip: self.max_handshakes_per_ip,
                handshake_min_rate: self.handshake_min_rate,
            },
            access: Access {
                allowed_origins: self.allow_origins,
                tokens,
                jwt_secret,
                jwt_previous_secrets,
                jwt_name_claim: self.jwt_name_claim,
                jwt_audience: self.jwt_audience,
                private_metrics: self.private_metrics,
                trusted_proxies: self.trust_proxies,
            },
            tls,
            subprotocols: self.subprotocols,
            websocket: defaults
                .websocket
                .read_buffer_size(self.read_buffer_size)
                .max_message_size(Some(self.max_message_size))
                .max_frame_size(Some(self.max_frame_size)),
            backplane: self.redis.map(|url| {
                let defaults = BackplaneConfig::new(url);
                BackplaneConfig {
                    password: redis_password,
                    ca_certificate_pem: redis_ca,
                    node_id: self.node_id.unwrap_or_else(|| defaults.node_id.clone()),
                    channel_prefix: self.redis_prefix,
                    publish_queue: self.redis_queue,
                    ..defaults
                }
            }),
            thread_stack_size: self.thread_stack_size,
        };
        // The library's own rules, in the user's words: they are not
        // written again here.
        match config.validate() {
            Err(switchboard::Error::Config { field, problem }) => {
                Err(crate::flags::explain(field, problem, sources))
            }
            Err(other) => Err(FlagError::from(other.to_string())),
            Ok(()) => Ok(config),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{Parsed, parse};
    use clap::CommandFactory;

    fn parsed(args: &[&str]) -> Result<Parsed, crate::sources::ParseError> {
        parse(args.iter().map(std::ffi::OsString::from).collect())
    }

    /// The configuration a command line without a subcommand makes.
    fn config(args: &[&str]) -> Result<Config, FlagError> {
        let parsed = parsed(args).unwrap();
        assert!(parsed.cli.command.is_none());
        parsed.cli.server.into_config(&parsed.sources)
    }

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_setting_has_its_variable() {
        let command = Cli::command();
        for (key, arg) in crate::sources::settings(&command) {
            let variable = arg.get_env().map(|var| var.to_string_lossy().into_owned());
            assert_eq!(variable, Some(crate::sources::variable(key)), "--{key}");
        }
        let print = command.get_arguments().find(|arg| arg.get_long() == Some("print-config")).unwrap();
        assert!(print.get_env().is_none());
    }

    #[test]
    fn no_flags_gives_the_library_defaults() {
        let config = config(&["switchboard"]).unwrap();
        let defaults = Config::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.timeouts, defaults.timeouts);
        assert_eq!(config.limits, defaults.limits);
        assert_eq!(config.access, defaults.access);
        assert!(config.tls.is_none());
        assert_eq!(config.thread_stack_size, defaults.thread_stack_size);
        assert_eq!(config.websocket.read_buffer_size, defaults.websocket.read_buffer_size);
        assert_eq!(config.websocket.max_message_size, defaults.websocket.max_message_size);
        assert_eq!(config.websocket.max_frame_size, defaults.websocket.max_frame_size);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        let config =
            config(&["switchboard", "--idle-timeout", "1m 30s", "--ping-interval", "500ms"]).unwrap();
        assert_eq!(config.timeouts.idle, std::time::Duration::from_secs(90));
        assert_eq!(config.timeouts.ping_interval, std::time::Duration::from_millis(500));
    }

    #[test]
    fn networks_are_cidr_or_single_addresses() {
        let config = config(&["switchboard", "--trust-proxy", "10.0.0.0/8", "--trust-proxy", "::1"]).unwrap();
        assert!(config.access.trusts("10.1.2.3".parse().unwrap()));
        assert!(config.access.trusts("::1".parse().unwrap()));
        assert!(!config.access.trusts("192.168.0.1".parse().unwrap()));
        assert!(parsed(&["switchboard", "--trust-proxy", "nonsense"]).is_err());
        let config = super::tests::config(&["switchboard", "--trust-proxy", "10.0.0.0/8,::1"]).unwrap();
        assert_eq!(config.access.trusted_proxies.len(), 2);
    }

    #[test]
    fn an_empty_token_file_is_an_error_not_open_access() {
        let path = std::env::temp_dir().join(format!("switchboard-empty-tokens-{}", std::process::id()));
        std::fs::write(&path, "# no tokens yet\n\n").unwrap();
        let result = config(&["switchboard", "--auth-token-file", path.to_str().unwrap()]);
        std::fs::remove_file(&path).unwrap();
        let message = result.unwrap_err().to_string();
        assert!(message.starts_with("--auth-token-file /"), "{message}");
        assert!(message.contains("holds no secret"), "{message}");
    }

    #[test]
    fn a_token_file_line_is_a_token_or_a_name_and_a_token() {
        let path = std::env::temp_dir().join(format!("switchboard-named-tokens-{}", std::process::id()));
        let read = |contents: &str| {
            std::fs::write(&path, contents).unwrap();
            read_tokens(&path, "--auth-token-file F")
        };
        let tokens = read("# who holds what\nprometheus  scrape-me\n\tbare \nalice\tS3cret==\n").unwrap();
        assert_eq!(
            tokens,
            [Token::named("prometheus", "scrape-me"), Token::new("bare"), Token::named("alice", "S3cret==")]
        );
        let message = read("one\n# a comment\n\nname token and more\n").unwrap_err().to_string();
        assert_eq!(
            message,
            "--auth-token-file F: the token on line 4 holds more than a name and a token (a token holds no spaces)"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_jwt_key_file_holds_a_key_a_line_the_current_one_first() {
        let path = std::env::temp_dir().join(format!("switchboard-jwt-keys-{}", std::process::id()));
        let refusal = |contents: &[u8]| {
            std::fs::write(&path, contents).unwrap();
            config(&["switchboard", "--jwt-secret-file", path.to_str().unwrap()]).unwrap_err().to_string()
        };
        let binary = refusal(&[0x8f, 0x00, 0xff, 0x10]);
        let none = refusal(b"# no key yet\n\n");
        std::fs::write(&path, b"# the new key first\nnew key\n\nold key\nolder key\n").unwrap();
        let access = config(&["switchboard", "--jwt-secret-file", path.to_str().unwrap()]).unwrap().access;
        std::fs::remove_file(&path).unwrap();
        assert!(binary.contains("not text") && binary.contains("openssl rand -hex"), "{binary}");
        assert!(none.contains("holds no secret"), "{none}");
        assert_eq!(access.jwt_secret, Some(Secret::new("new key")));
        assert_eq!(access.jwt_previous_secrets, [Secret::new("old key"), Secret::new("older key")]);
    }

    #[test]
    fn redis_flags_make_a_backplane() {
        assert!(config(&["switchboard"]).unwrap().backplane.is_none());
        let config = super::tests::config(&["switchboard", "--redis", "redis://127.0.0.1:6380"]).unwrap();
        let backplane = config.backplane.unwrap();
        assert_eq!(backplane.url, "redis://127.0.0.1:6380");
        assert_eq!(backplane.node_id.len(), 16, "a random id: {}", backplane.node_id);
        assert_eq!(backplane.channel_prefix, default_backplane().channel_prefix);
        let line = ["switchboard", "--redis", "redis://r", "--node-id", "eu-1", "--redis-prefix", "chat:"];
        let backplane = super::tests::config(&line).unwrap().backplane.unwrap();
        assert_eq!((backplane.node_id.as_str(), backplane.channel_prefix.as_str()), ("eu-1", "chat:"));
        let error = super::tests::config(&["switchboard", "--node-id", "eu-1"]).unwrap_err();
        assert_eq!(error.to_string(), "--node-id eu-1: needs --redis too");
    }

    #[test]
    fn the_redis_password_comes_from_a_file_of_one_line() {
        let dir = std::env::temp_dir().join(format!("switchboard-redis-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let read = |contents: &str| {
            let path = dir.join("password");
            std::fs::write(&path, contents).unwrap();
            let line =
                ["switchboard", "--redis", "redis://db", "--redis-password-file", path.to_str().unwrap()];
            config(&line).map(|config| config.backplane.unwrap().password.unwrap())
        };
        assert_eq!(read("# not a comment \n").unwrap(), Secret::new("# not a comment "));
        assert_eq!(read("crlf\r\n").unwrap(), Secret::new("crlf"));
        assert_eq!(read("no newline").unwrap(), Secret::new("no newline"));
        // Config::validate's rule, told in flag words.
        let empty = read("").unwrap_err().to_string();
        assert!(empty.contains("--redis-password-file") && empty.contains("must not be empty"), "{empty}");
        assert!(read("two\nlines\n").unwrap_err().to_string().contains("more than one line"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn origins_listed_with_spaces_after_commas_are_each_allowed() {
        let listed = config(&["switchboard", "--allow-origin", "https://a.example, https://b.example"]);
        assert_eq!(listed.unwrap().access.allowed_origins, ["https://a.example", "https://b.example"]);
        let error = config(&["switchboard", "--allow-origin", "chat.example.com"]).unwrap_err().to_string();
        assert!(error.contains("--allow-origin") && error.contains("scheme://host[:port]"), "{error}");
    }

    #[test]
    fn jwt_name_claim_needs_a_jwt_secret_file() {
        let error = config(&["switchboard", "--jwt-name-claim", "name"]).unwrap_err();
        assert!(error.to_string().contains("needs --jwt-secret-file"), "{error}");
        let path = std::env::temp_dir().join(format!("switchboard-jwt-key-{}", std::process::id()));
        std::fs::write(&path, "a key\n").unwrap();
        let line = ["switchboard", "--jwt-secret-file", path.to_str().unwrap(), "--jwt-name-claim", "name"];
        let config = config(&line);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(config.unwrap().access.jwt_name_claim.as_deref(), Some("name"));
    }

    #[test]
    fn private_metrics_needs_a_credentials_file() {
        let error = config(&["switchboard", "--private-metrics"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--private-metrics true: needs --auth-token-file or --jwt-secret-file: the credentials /metrics and \
             /stats would ask for"
        );
        let path = std::env::temp_dir().join(format!("switchboard-metrics-tokens-{}", std::process::id()));
        std::fs::write(&path, "scraper\n").unwrap();
        let file = path.to_str().unwrap();
        let tokens = config(&["switchboard", "--private-metrics", "--auth-token-file", file]);
        let plain = config(&["switchboard", "--auth-token-file", file]);
        let jwt = config(&["switchboard", "--private-metrics", "--jwt-secret-file", file]);
        std::fs::remove_file(&path).unwrap();
        assert!(tokens.unwrap().access.private_metrics);
        assert!(!plain.unwrap().access.private_metrics);
        assert!(jwt.unwrap().access.private_metrics, "a JWT key is credentials too");
    }

    #[test]
    fn tls_needs_both_files() {
        let error = config(&["switchboard", "--tls-cert", "cert.pem"]).unwrap_err();
        assert_eq!(error.to_string(), "--tls-cert cert.pem: needs --tls-key too");
    }
}
