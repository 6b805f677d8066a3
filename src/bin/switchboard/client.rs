//! `switchboard client`: several connections at once; lines typed on stdin
//! go out, and every message and change of state comes back, each tagged
//! with the name of its connection.

use std::error::Error;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded, select};
use humantime::Duration as HumanDuration;
use switchboard::client::{Client, ClientConfig, ClientError, Endpoint, Event, Reconnect};

/// The client's options.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Connections to open at once, as URL or NAME=URL (ws:// or wss://). An
    /// unnamed connection is named by its position: 1, 2, ...
    #[arg(required = true, value_name = "[NAME=]URL")]
    pub urls: Vec<String>,

    /// A subprotocol to offer: PROTOCOL for every connection, NAME=PROTOCOL for
    /// one; repeatable, in order of preference.
    #[arg(long = "protocol", value_name = "[NAME=]PROTOCOL")]
    pub protocols: Vec<String>,

    /// A header for the upgrade request: 'Key: Value' for every connection,
    /// NAME='Key: Value' for one; repeatable (a bearer token, say).
    #[arg(long = "header", value_name = "[NAME=]HEADER")]
    pub headers: Vec<String>,

    /// Ping every connection this often.
    #[arg(long, value_name = "DURATION", default_value_t = ClientConfig::default().ping_interval.into())]
    pub ping_interval: HumanDuration,

    /// A connection silent for a ping interval and this long is taken for dead.
    #[arg(long, value_name = "DURATION", default_value_t = ClientConfig::default().pong_timeout.into())]
    pub pong_timeout: HumanDuration,

    /// Connecting, TLS and the upgrade together must take no longer.
    #[arg(long, value_name = "DURATION", default_value_t = ClientConfig::default().connect_timeout.into())]
    pub connect_timeout: HumanDuration,

    /// When a connection drops, end it instead of reconnecting.
    #[arg(long)]
    pub no_reconnect: bool,

    /// Also trust this certificate (PEM) for wss://: a server's self-signed one.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// How long the lines may take to say goodbye after EOF or Ctrl-C.
const GOODBYE: Duration = Duration::from_secs(5);

/// What the stdin thread passes on.
enum Input {
    Line(String),
    /// A line that is not UTF-8, by its number: a text message cannot hold
    /// it, and the lines after it are still read.
    NotText(usize),
    End,
}

impl ClientArgs {
    /// The endpoints: names given or by position, each with the protocols
    /// and headers meant for it (by name) or for all (no name).
    fn endpoints(&self) -> Result<Vec<Endpoint>, Box<dyn Error>> {
        let mut endpoints: Vec<Endpoint> = self
            .urls
            .iter()
            .enumerate()
            .map(|(i, spec)| match split_name(spec, |name| !name.is_empty() && !name.contains([':', '/'])) {
                Some((name, url)) => Endpoint::new(name, url),
                None => Endpoint::new((i + 1).to_string(), spec.as_str()),
            })
            .collect();
        let names: Vec<String> = endpoints.iter().map(|e| e.name.clone()).collect();
        if let Some(name) = names.iter().enumerate().find_map(|(i, n)| names[..i].contains(n).then_some(n)) {
            return Err(format!("two connections are named {name:?}").into());
        }
        for spec in &self.protocols {
            for (endpoint, protocol) in targets(&mut endpoints, "--protocol", spec)? {
                endpoint.subprotocols.push(protocol.to_owned());
            }
        }
        for spec in &self.headers {
            for (endpoint, header) in targets(&mut endpoints, "--header", spec)? {
                let (key, value) =
                    header.split_once(':').ok_or_else(|| format!("{header:?} is not 'Key: Value'"))?;
                endpoint.headers.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
        Ok(endpoints)
    }

    /// The library's complaint about a setting, in the words of the flag
    /// that gave it.
    fn explain(&self, error: ClientError) -> Box<dyn Error> {
        if let (ClientError::Trust(cause), Some(path)) = (&error, &self.ca_cert) {
            return format!("--ca-cert {}: {}", path.display(), switchboard::error_chain(cause)).into();
        }
        let ClientError::Config { field, problem } = error else { return Box::new(error) };
        let given = match field {
            "ping_interval" => format!("--ping-interval {}", self.ping_interval),
            "pong_timeout" => format!("--pong-timeout {}", self.pong_timeout),
            "connect_timeout" => format!("--connect-timeout {}", self.connect_timeout),
            _ => return Box::new(error),
        };
        format!("{given}: {problem}").into()
    }

    fn config(&self) -> Result<ClientConfig, Box<dyn Error>> {
        let extra_roots_pem = match &self.ca_cert {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?)
            }
            None => None,
        };
        let defaults = ClientConfig::default();
        Ok(ClientConfig {
            ping_interval: self.ping_interval.into(),
            pong_timeout: self.pong_timeout.into(),
            connect_timeout: self.connect_timeout.into(),
            reconnect: if self.no_reconnect { Reconnect::Never } else { defaults.reconnect },
            extra_roots_pem,
            ..defaults
        })
    }
}

/// `NAME=rest` when the part before the first `=` passes `is_name`.
fn split_name(spec: &str, is_name: impl Fn(&str) -> bool) -> Option<(&str, &str)> {
    spec.split_once('=').filter(|(name, _)| is_name(name))
}

/// The endpoints a `flag`'s `spec` is for, with the value meant for them:
/// the one it names, or all of them. A subprotocol and a header's name are
/// tokens, which hold no `=`, and a connection's name holds no `:`: an `=`
/// before any `:` ends a connection's name, and a name that is no
/// connection's is a slip to report, not part of the value.
fn targets<'a, 's>(
    endpoints: &'a mut [Endpoint],
    flag: &str,
    spec: &'s str,
) -> Result<Vec<(&'a mut Endpoint, &'s str)>, String> {
    let Some((name, value)) = split_name(spec, |name| !name.contains(':')) else {
        return Ok(endpoints.iter_mut().map(|e| (e, spec)).collect());
    };
    if !endpoints.iter().any(|e| e.name == name) {
        let names: Vec<String> = endpoints.iter().map(|e| format!("{:?}", e.name)).collect();
        return Err(format!(
            "{flag} {spec:?}: no connection named {name:?} (the connections are {})",
            names.join(", ")
        ));
    }
    Ok(endpoints.iter_mut().filter(|e| e.name == name).map(|e| (e, value)).collect())
}

/// Runs the client until every connection has ended, or until EOF or an
/// interrupt closes them all. Exits non-zero when nothing could connect.
pub fn run(args: ClientArgs, interrupted: Receiver<()>) -> Result<ExitCode, Box<dyn Error>> {
    let endpoints = args.endpoints()?;
    let total = endpoints.len();
    let mut client = Client::start(endpoints, args.config()?).map_err(|e| args.explain(e))?;
    let input = read_stdin();
    let (waiting, deaf) = (crossbeam_channel::never(), crossbeam_channel::never());
    // Lines typed (or piped) before every connection has had its first try
    // wait for it, rather than being refused as "not connected".
    let mut settled = std::collections::HashSet::new();
    let mut ended = 0;
    let mut connected_once = false;
    let mut closing_since: Option<Instant> = None;
    let stdout = io::stdout();
    let say = |text: String| {
        let mut out = stdout.lock();
        writeln!(out, "{text}").and_then(|()| out.flush())
    };
    while ended < total {
        let mut said = Ok(());
        // Once closing, the lines have a few seconds to say goodbye.
        let left = closing_since.map_or(Duration::MAX, |since| GOODBYE.saturating_sub(since.elapsed()));
        // Once closing, stdin and interrupts have had their say: an ended
        // stdin would be ready at every turn, and the loop would spin.
        let typed = if settled.len() == total && closing_since.is_none() { &input } else { &waiting };
        let interrupt = if closing_since.is_none() { &interrupted } else { &deaf };
        select! {
            recv(client.events()) -> event => {
                let Ok(event) = event else { break };
                match &event {
                    Event::Connected { line, .. } => {
                        connected_once = true;
                        settled.insert(line.clone());
                    }
                    Event::Failed { line, .. } => {
                        settled.insert(line.clone());
                    }
                    Event::Ended { line } => {
                        settled.insert(line.clone());
                        ended += 1;
                    }
                    _ => {}
                }
                said = say(event.to_string());
            },
            recv(typed) -> line => match line {
                Ok(Input::Line(line)) => {
                    for problem in route(&client, &line) {
                        said = said.and(say(problem));
                    }
                }
                Ok(Input::NotText(number)) => {
                    said = say(format!("[stdin] line {number} not sent: it is not UTF-8"));
                }
                Ok(Input::End) | Err(_) => {
                    client.close();
                    closing_since = Some(Instant::now());
                }
            },
            recv(interrupt) -> _ => {
                client.close();
                closing_since = Some(Instant::now());
            },
            default(left) => break,
        }
        // Whoever read the output has gone (`| head -1`): what the client
        // is for, showing what happens, is over, so it closes as on EOF
        // rather than go on unseen until stdin ends.
        if said.is_err_and(|e| e.kind() == io::ErrorKind::BrokenPipe) && closing_since.is_none() {
            client.close();
            closing_since = Some(Instant::now());
        }
    }
    client.join();
    Ok(if connected_once { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// How long a line waits for room in a connection's queue: lines piped in
/// come faster than a connection sends them, and are not to be dropped.
const ROOM_WAIT: Duration = Duration::from_secs(10);

/// Sends a typed line: `@name text` to one connection, anything else to all.
/// Returns what could not be sent, one line each.
fn route(client: &Client, line: &str) -> Vec<String> {
    if line.is_empty() {
        return Vec::new();
    }
    if let Some(rest) = line.strip_prefix('@') {
        let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
        return match client.send_waiting(name, text, ROOM_WAIT) {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!("[{name}] not sent: {e}")],
        };
    }
    client
        .send_all_waiting(line, ROOM_WAIT)
        .into_iter()
        .filter_map(|(name, sent)| sent.err().map(|e| format!("[{name}] not sent: {e}")))
        .collect()
}

/// Lines from stdin, on a thread of their own, then `End`.
fn read_stdin() -> Receiver<Input> {
    let (lines, input) = bounded(64);
    std::thread::spawn(move || {
        for (number, line) in std::io::stdin().lock().split(b'\n').enumerate() {
            let Ok(mut line) = line else { break };
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_or(Input::NotText(number + 1), Input::Line);
            if lines.send(line).is_err() {
                return;
            }
        }
        let _ = lines.send(Input::End);
    });
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn endpoints(args: &[&str]) -> Vec<Endpoint> {
        let cli = crate::args::Cli::try_parse_from(args).unwrap();
        let Some(crate::args::Command::Client(client)) = cli.command else { panic!("not the client") };
        client.endpoints().unwrap()
    }

    #[test]
    fn connections_are_named_or_numbered() {
        let e = endpoints(&["switchboard", "client", "chat=ws://h:1/ws/a", "ws://h:1/echo?x=y=z"]);
        assert_eq!((e[0].name.as_str(), e[0].url.as_str()), ("chat", "ws://h:1/ws/a"));
        assert_eq!((e[1].name.as_str(), e[1].url.as_str()), ("2", "ws://h:1/echo?x=y=z"));
    }

    #[test]
    fn protocols_and_headers_go_to_one_connection_or_all() {
        let e = endpoints(&[
            "switchboard",
            "client",
            "a=ws://h/1",
            "b=ws://h/2",
            "--protocol",
            "a=chat.v1",
            "--protocol",
            "common",
            "--header",
            "b=Authorization: Bearer x=y",
            "--header",
            "X-Trace: 1",
        ]);
        assert_eq!(e[0].subprotocols, ["chat.v1", "common"]);
        assert_eq!(e[1].subprotocols, ["common"]);
        assert_eq!(e[0].headers, [("X-Trace".to_owned(), "1".to_owned())]);
        assert_eq!(
            e[1].headers,
            [("Authorization".to_owned(), "Bearer x=y".to_owned()), ("X-Trace".to_owned(), "1".to_owned())]
        );
    }

    #[test]
    fn a_name_no_connection_has_is_refused_as_such() {
        let refused = |flag: &str, spec: &str| {
            let args = ["switchboard", "client", "alice=ws://h/1", "bob=ws://h/2", flag, spec];
            let cli = crate::args::Cli::try_parse_from(args).unwrap();
            let Some(crate::args::Command::Client(client)) = cli.command else { panic!("not the client") };
            client.endpoints().unwrap_err().to_string()
        };
        assert_eq!(
            refused("--header", "alcie=Authorization: Bearer x=y"),
            "--header \"alcie=Authorization: Bearer x=y\": no connection named \"alcie\" \
             (the connections are \"alice\", \"bob\")"
        );
        assert_eq!(
            refused("--protocol", "bbo=chat.v1"),
            "--protocol \"bbo=chat.v1\": no connection named \"bbo\" (the connections are \"alice\", \"bob\")"
        );
        // An `=` in a header's value is no name.
        let e = endpoints(&["switchboard", "client", "ws://h/1", "--header", "Cookie: a=b"]);
        assert_eq!(e[0].headers, [("Cookie".to_owned(), "a=b".to_owned())]);
    }

    #[test]
    fn a_bare_server_command_line_still_serves() {
        let cli = crate::args::Cli::try_parse_from(["switchboard", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(cli.command.is_none());
        assert!(crate::args::Cli::try_parse_from(["switchboard", "client"]).is_err(), "a URL is required");
    }
}
