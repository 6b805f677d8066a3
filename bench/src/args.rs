//! The command line, declared with clap's derive, and its checked conversion into each scenario's settings.
//!
//! Every count and duration has a hard upper bound: the tool is meant to be
//! run on shared machines, and a typo must not turn into a million
//! connections or a run that never ends.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::payload::HEADER_LEN;
use crate::scenario::LoadSettings;
use crate::scenario::churn::ChurnSettings;
use crate::scenario::echo::EchoSettings;
use crate::scenario::fanout::{FanoutSettings, Pace};
use crate::scenario::idle::IdleSettings;
use crate::source::Sources;
use crate::system::open_files_limit;
use crate::target::{Reach, Target};

/// The largest message, bytes.
const MAX_SIZE: usize = 1 << 20;
/// The most connections any scenario opens. Each needs a local port, and
/// Linux has about 28,000 of them per server address by default.
const MAX_CONNECTIONS: usize = 25_000;
/// The longest measured interval.
const MAX_DURATION: Duration = Duration::from_secs(600);
/// A fanout window past this would let the reference servers' 4096-message
/// client queues overflow, which is not what the window is for.
const MAX_WINDOW: u64 = 4096;

/// Load for any WebSocket server with an echo path and room paths:
/// throughput, latency percentiles and message accounting (lost, duplicated,
/// out of order) for echo, fanout, idle and churn workloads, plus a report
/// that compares several servers.
///
/// The load side runs a few event-loop threads (mio), so it can hold tens of
/// thousands of connections without a thread each. Every run is bounded in
/// time and count, and only loopback servers are loaded unless
/// --allow-remote is given.
#[derive(Debug, Parser)]
#[command(name = "switchboard-bench", version)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// C connections to the echo path, one message in flight each: messages/s and round-trip latency.
    Echo(EchoArgs),
    /// N subscribers and one publisher in a room: deliveries/s and publish-to-delivery latency.
    Fanout(FanoutArgs),
    /// Hold N connections in a room: the server's memory, threads and fds per connection.
    Idle(IdleArgs),
    /// W workers connecting, upgrading, echoing once and closing, over and over: handshakes/s.
    Churn(ChurnArgs),
    /// Read JSON results of earlier runs and write a comparison (Markdown table and SVG chart).
    Report(ReportArgs),
}

/// Options every load scenario takes.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The server, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9001")]
    pub server: String,

    /// Allow a server that is not on a loopback address. Without it the tool
    /// refuses, because it generates heavy load.
    #[arg(long)]
    pub allow_remote: bool,

    /// Connect from this local address (such as 127.0.0.2) rather than the
    /// one the system picks; repeat it, or give an IPv4 range such as
    /// 127.0.0.2-127.0.0.9, to spread the connections over several.
    ///
    /// Connection i leaves from address i mod n, in the order given. A range
    /// is inclusive and stays within one /24 (only the last number changes).
    /// To one server port, each source address has its own ~28,000 local
    /// ports and counts once against the server's per-address limits, so
    /// tens of thousands of connections from one machine need several
    /// (all of 127.0.0.0/8 is this machine). Loopback addresses only, unless
    /// --allow-remote is given.
    #[arg(long = "from", value_name = "ADDR[-ADDR]")]
    pub from: Vec<String>,

    /// The measured interval (for idle: how long the connections are held), at most 10m.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub duration: humantime::Duration,

    /// After the measured interval, how long to wait for messages in flight
    /// before counting them lost, at most 1m.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub drain: humantime::Duration,

    /// The bound on connecting every connection (and, for fanout, on every
    /// subscriber joining), at most 10m.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub setup_timeout: humantime::Duration,

    /// Event-loop threads, 1 to 64 [default: the CPUs this process may run on].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// The server's name in reports.
    #[arg(long, value_name = "NAME", default_value = "server")]
    pub label: String,

    /// The workload's name in reports [default: the scenario's, such as echo or fanout-max].
    #[arg(long, value_name = "NAME")]
    pub case: Option<String>,

    /// tungstenite's read buffer per client connection, bytes (its own default
    /// of 128 KiB would cost 1.3 GiB for 10,000 idle connections).
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub read_buffer: usize,

    /// The server's process id, if it runs on this machine: report its CPU
    /// use (and for idle its RSS, threads and fds per connection).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `echo` options.
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Connections, each with one message in flight.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: usize,
    /// Bytes per message (at least 24: sequence number, send time, stream).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// The echo path.
    #[arg(long, default_value = "/echo")]
    pub path: String,
    /// The most messages sent in all.
    #[arg(long, value_name = "N", default_value_t = 100_000_000)]
    pub max_messages: u64,
    /// Messages per second on each connection, at most [default: the next
    /// as soon as the echo of the last is back]. For a steady load beside
    /// others, as in a soak.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
}

/// `fanout` options.
#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Subscribers (the publisher is one more connection).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub subscribers: usize,
    /// Bytes per message (at least 24).
    #[arg(long, short = 's', default_value_t = 100)]
    pub size: usize,
    /// The room's path.
    #[arg(long, default_value = "/ws/bench-fanout")]
    pub path: String,
    /// Messages per second to publish [default: as fast as the window allows].
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Messages published but not yet received by every subscriber, at most (1 to 4096).
    ///
    /// 64 was picked by measurement (1000 subscribers, servers on one core):
    /// switchboard is saturated from 16, the thread-per-connection reference
    /// from 64, and the tokio reference gains little more beyond 64 while
    /// latency grows with the window. Each client's queue stays at 64
    /// messages or fewer, far from every server's limit.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub window: u64,
    /// The most messages published in all.
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    pub max_messages: u64,
    /// Connect the publisher to this server instead of --server: another node
    /// sharing rooms with it, to measure delivery across nodes.
    #[arg(long, value_name = "HOST:PORT")]
    pub publish_to: Option<String>,
}

/// `idle` options.
#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Connections to hold.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,
    /// The room's path.
    #[arg(long, default_value = "/ws/bench-idle")]
    pub path: String,
    /// The bound on waiting for the server's thread count to stop changing.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub settle_timeout: humantime::Duration,
}

/// `churn` options.
#[derive(Debug, clap::Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Worker threads, each with one connection at a time.
    #[arg(long, short = 'w', default_value_t = 8)]
    pub workers: usize,
    /// The echo path.
    #[arg(long, default_value = "/echo")]
    pub path: String,
    /// Bytes in each cycle's message (at least 24).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// The most cycles in all.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_cycles: u64,
    /// The bound on each connect, read and write.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub io_timeout: humantime::Duration,
    /// Cycles per second, all workers together, at most [default: each
    /// worker starts its next cycle as soon as the last has ended]. For a
    /// steady load beside others, as in a soak.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
}

/// `report` options.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// JSON files written by --json.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The server the others are compared with (ratios are it ÷ each other).
    #[arg(long, value_name = "LABEL", default_value = "switchboard")]
    pub baseline: String,
    /// Write the Markdown table here (it is printed either way).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// Fails unless `min <= value <= max`.
fn within(name: &'static str, value: u64, min: u64, max: u64) -> Result<u64> {
    if (min..=max).contains(&value) { Ok(value) } else { Err(Error::OutOfRange { name, value, min, max }) }
}

/// Fails unless `value` is within `min..=max`, compared in milliseconds.
fn within_time(name: &'static str, value: Duration, min: Duration, max: Duration) -> Result<Duration> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    within(name, ms(value), ms(min), ms(max)).map(|_| value)
}

fn size(value: usize) -> Result<usize> {
    within("size", value as u64, HEADER_LEN as u64, MAX_SIZE as u64).map(|_| value)
}

fn path(value: &str) -> Result<String> {
    if !value.starts_with('/') {
        return Err(Error::Invalid { name: "path", problem: "must start with /" });
    }
    Ok(value.to_owned())
}

/// Fails if `connections` would not fit under this process's open-file
/// limit: a check of this machine, made when a run starts, not part of
/// checking the options.
pub fn fits_open_files(connections: usize) -> Result<()> {
    match open_files_limit() {
        // Some descriptors go to the poller, the waker, stdio and /proc.
        Some(limit) if connections as u64 + 32 > limit => Err(Error::Invalid {
            name: "connections",
            problem: "more than the open-file limit allows (see ulimit -n)",
        }),
        _ => Ok(()),
    }
}

impl LoadArgs {
    /// Checks the options and resolves the server.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfRange`] or [`Error::Invalid`] for an option outside its
    /// bounds; [`Error::Resolve`] or [`Error::NotLoopback`] for the server;
    /// [`Error::SourceNotLoopback`] for a `--from` address.
    pub fn settings(&self, command: String) -> Result<LoadSettings> {
        let reach = self.reach();
        let default_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = self.threads.unwrap_or(default_threads);
        let target = Target::resolve(&self.server, reach)?;
        let sources = Sources::parse(&self.from, reach)?;
        sources.check_family(target.addr())?;
        Ok(LoadSettings {
            target,
            sources,
            duration: within_time(
                "duration",
                self.duration.into(),
                Duration::from_millis(100),
                MAX_DURATION,
            )?,
            drain: within_time("drain", self.drain.into(), Duration::ZERO, Duration::from_secs(60))?,
            setup_timeout: within_time(
                "setup-timeout",
                self.setup_timeout.into(),
                Duration::from_secs(1),
                MAX_DURATION,
            )?,
            threads: within("threads", threads as u64, 1, 64)? as usize,
            label: self.label.clone(),
            case: self.case.clone(),
            read_buffer: within("read-buffer", self.read_buffer as u64, 512, 16 << 20)? as usize,
            server_pid: self.server_pid,
            command,
        })
    }

    fn reach(&self) -> Reach {
        if self.allow_remote { Reach::Remote } else { Reach::LoopbackOnly }
    }
}

impl EchoArgs {
    /// Checks the options.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfRange`] or [`Error::Invalid`] for an option outside its bounds.
    pub fn settings(&self) -> Result<EchoSettings> {
        within("connections", self.connections as u64, 1, MAX_CONNECTIONS as u64)?;
        Ok(EchoSettings {
            connections: self.connections,
            size: size(self.size)?,
            path: path(&self.path)?,
            max_messages: within("max-messages", self.max_messages, 1, 1_000_000_000)?,
            interval: rate(self.rate)?.map(|rate| Duration::from_secs_f64(1.0 / rate)),
        })
    }
}

/// Checks a rate: `None` for as fast as the scenario goes.
fn rate(value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(rate) if !(rate.is_finite() && (0.1..=1_000_000.0).contains(&rate)) => {
            Err(Error::Invalid { name: "rate", problem: "must be between 0.1 and 1000000" })
        }
        rate => Ok(rate),
    }
}

impl FanoutArgs {
    /// Checks the options, and resolves `--publish-to` as `--server` is.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfRange`] or [`Error::Invalid`] for an option outside its
    /// bounds, or a `--from` address of the other family than `--publish-to`;
    /// [`Error::Resolve`] or [`Error::NotLoopback`] for `--publish-to`.
    pub fn settings(&self) -> Result<FanoutSettings> {
        let reach = self.load.reach();
        let publish_to =
            self.publish_to.as_deref().map(|server| Target::resolve(server, reach)).transpose()?;
        if let Some(target) = publish_to {
            Sources::parse(&self.load.from, reach)?.check_family(target.addr())?;
        }
        within("subscribers", self.subscribers as u64, 1, MAX_CONNECTIONS as u64 - 1)?;
        let pace = rate(self.rate)?.map_or(Pace::Flat, Pace::Rate);
        Ok(FanoutSettings {
            subscribers: self.subscribers,
            size: size(self.size)?,
            path: path(&self.path)?,
            pace,
            window: within("window", self.window, 1, MAX_WINDOW)?,
            max_messages: within("max-messages", self.max_messages, 1, 1_000_000_000)?,
            publish_to,
        })
    }
}

impl IdleArgs {
    /// Checks the options.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfRange`] or [`Error::Invalid`] for an option outside its bounds.
    pub fn settings(&self) -> Result<IdleSettings> {
        within("connections", self.connections as u64, 1, MAX_CONNECTIONS as u64)?;
        Ok(IdleSettings {
            connections: self.connections,
            path: path(&self.path)?,
            settle_timeout: within_time(
                "settle-timeout",
                self.settle_timeout.into(),
                Duration::ZERO,
                MAX_DURATION,
            )?,
        })
    }
}

impl ChurnArgs {
    /// Checks the options.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfRange`] or [`Error::Invalid`] for an option outside its bounds.
    pub fn settings(&self) -> Result<ChurnSettings> {
        Ok(ChurnSettings {
            workers: within("workers", self.workers as u64, 1, 256)? as usize,
            path: path(&self.path)?,
            size: size(self.size)?,
            max_cycles: within("max-cycles", self.max_cycles, 1, 100_000_000)?,
            io_timeout: within_time(
                "io-timeout",
                self.io_timeout.into(),
                Duration::from_millis(100),
                Duration::from_secs(60),
            )?,
            rate: rate(self.rate)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Command {
        Args::try_parse_from(line.split_whitespace()).unwrap().command
    }

    fn load(command: &Command) -> &LoadArgs {
        match command {
            Command::Echo(a) => &a.load,
            Command::Fanout(a) => &a.load,
            Command::Idle(a) => &a.load,
            Command::Churn(a) => &a.load,
            Command::Report(_) => panic!("no load options"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        for line in ["b echo", "b fanout", "b idle", "b churn", "b fanout --rate 100"] {
            let command = parse(line);
            load(&command).settings(String::new()).unwrap();
            match &command {
                Command::Echo(a) => drop(a.settings().unwrap()),
                Command::Fanout(a) => drop(a.settings().unwrap()),
                Command::Idle(a) => drop(a.settings().unwrap()),
                Command::Churn(a) => drop(a.settings().unwrap()),
                Command::Report(_) => unreachable!(),
            }
        }
    }

    #[test]
    fn a_remote_server_is_refused_unless_allowed() {
        let refused = load(&parse("b echo --server 10.1.2.3:80")).settings(String::new());
        assert!(matches!(refused, Err(Error::NotLoopback { .. })), "{refused:?}");
        let allowed = load(&parse("b echo --server 10.1.2.3:80 --allow-remote")).settings(String::new());
        assert!(allowed.is_ok(), "{allowed:?}");
    }

    #[test]
    fn connections_may_come_from_several_loopback_addresses() {
        let line = "b idle --from 127.0.0.2-127.0.0.4 --from 127.0.0.9";
        let sources = load(&parse(line)).settings(String::new()).unwrap().sources;
        let picked: Vec<_> = (0..5).map(|i| sources.pick(i).unwrap().to_string()).collect();
        assert_eq!(picked, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9", "127.0.0.2"]);
        let none = load(&parse("b churn")).settings(String::new()).unwrap().sources;
        assert_eq!(none.pick(0), None);
    }

    #[test]
    fn a_remote_source_is_refused_unless_allowed() {
        let refused = load(&parse("b echo --from 10.1.2.3")).settings(String::new());
        assert!(matches!(refused, Err(Error::SourceNotLoopback { .. })), "{refused:?}");
        let allowed = load(&parse("b echo --from 10.1.2.3 --allow-remote")).settings(String::new());
        assert!(allowed.is_ok(), "{allowed:?}");
    }

    #[test]
    fn sources_must_be_of_the_servers_family() {
        let mixed = load(&parse("b fanout --server [::1]:9001 --from 127.0.0.2")).settings(String::new());
        assert!(matches!(mixed, Err(Error::Invalid { name: "from", .. })), "{mixed:?}");
        let line = "b fanout --server [::1]:9001 --from ::1 --publish-to 127.0.0.1:9002";
        let Command::Fanout(fanout) = parse(line) else { unreachable!() };
        assert!(matches!(fanout.settings(), Err(Error::Invalid { name: "from", .. })));
    }

    #[test]
    fn a_malformed_range_is_refused() {
        let refused = load(&parse("b echo --from 127.0.0.9-127.0.1.2")).settings(String::new());
        assert!(matches!(refused, Err(Error::Invalid { name: "from", .. })), "{refused:?}");
    }

    #[test]
    fn the_publisher_may_go_to_another_loopback_server() {
        let Command::Fanout(fanout) = parse("b fanout --publish-to 127.0.0.1:9002") else { unreachable!() };
        let target = fanout.settings().unwrap().publish_to.unwrap();
        assert_eq!(target.addr(), "127.0.0.1:9002".parse().unwrap());
        let Command::Fanout(remote) = parse("b fanout --publish-to 10.1.2.3:80") else { unreachable!() };
        assert!(matches!(remote.settings(), Err(Error::NotLoopback { .. })));
    }

    #[test]
    fn durations_are_bounded() {
        let too_long = load(&parse("b churn --duration 11m")).settings(String::new());
        assert!(matches!(too_long, Err(Error::OutOfRange { name: "duration", .. })), "{too_long:?}");
        let too_short = load(&parse("b churn --duration 1ms")).settings(String::new());
        assert!(matches!(too_short, Err(Error::OutOfRange { name: "duration", .. })), "{too_short:?}");
    }

    #[test]
    fn counts_are_bounded() {
        let Command::Idle(idle) = parse("b idle -n 1000000") else { unreachable!() };
        assert!(matches!(idle.settings(), Err(Error::OutOfRange { name: "connections", .. })));
        let Command::Fanout(fanout) = parse("b fanout --window 5000") else { unreachable!() };
        assert!(matches!(fanout.settings(), Err(Error::OutOfRange { name: "window", .. })));
        let Command::Echo(echo) = parse("b echo -c 0") else { unreachable!() };
        assert!(matches!(echo.settings(), Err(Error::OutOfRange { name: "connections", .. })));
        let Command::Churn(churn) = parse("b churn -w 100000") else { unreachable!() };
        assert!(matches!(churn.settings(), Err(Error::OutOfRange { name: "workers", .. })));
    }

    #[test]
    fn messages_must_hold_the_header() {
        let Command::Echo(echo) = parse("b echo --size 8") else { unreachable!() };
        assert!(matches!(echo.settings(), Err(Error::OutOfRange { name: "size", .. })));
    }

    #[test]
    fn a_rate_must_be_positive() {
        let Command::Fanout(fanout) = parse("b fanout --rate 0") else { unreachable!() };
        assert!(matches!(fanout.settings(), Err(Error::Invalid { name: "rate", .. })));
    }

    #[test]
    fn paths_are_absolute() {
        let Command::Echo(echo) = parse("b echo --path echo") else { unreachable!() };
        assert!(matches!(echo.settings(), Err(Error::Invalid { name: "path", .. })));
    }
}
