//! The tool's errors: what stops a run, as opposed to what a run counts.
//!
//! A connection that fails, a message that is lost, a client the server
//! closes: those are results, counted in the report. An `Error` is a reason
//! the tool cannot run or finish a scenario at all.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The result type of the tool.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a scenario could not run, or its results could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is outside the range the tool accepts.
    #[error("--{name} must be between {min} and {max}, not {value}")]
    OutOfRange {
        /// The flag, without its dashes.
        name: &'static str,
        /// What was given.
        value: u64,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// An argument is malformed.
    #[error("--{name}: {problem}")]
    Invalid {
        /// The flag, without its dashes.
        name: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The target does not resolve to any address.
    #[error("cannot resolve {target}")]
    Resolve {
        /// What was given to `--server`.
        target: String,
        /// Why it did not resolve (absent when it resolved to nothing).
        #[source]
        source: Option<io::Error>,
    },
    /// The target is not on this machine, and `--allow-remote` was not given.
    #[error("{addr} is not a loopback address; pass --allow-remote to load a server on another machine")]
    NotLoopback {
        /// The address the target resolved to.
        addr: SocketAddr,
    },
    /// A `--from` address is not on this machine, and `--allow-remote` was not given.
    #[error("--from {addr} is not a loopback address; pass --allow-remote to connect from another address")]
    SourceNotLoopback {
        /// The address.
        addr: IpAddr,
    },
    /// No socket can be bound to a `--from` address: it is not one of this machine's.
    #[error("--from {addr}: cannot bind a socket to it")]
    Bind {
        /// The address.
        addr: IpAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A thread of the tool could not be started.
    #[error("cannot start thread {name}")]
    Spawn {
        /// The name it would have had.
        name: String,
        /// Why the operating system refused.
        #[source]
        source: io::Error,
    },
    /// A thread of the tool panicked; that is a bug in the tool.
    #[error("thread {name} panicked")]
    Panicked {
        /// Its name.
        name: String,
    },
    /// The event loop's poller failed.
    #[error("event loop")]
    Poll(#[source] io::Error),
    /// Setup did not finish in time: too few connections opened, or
    /// subscribers did not all see the publisher.
    #[error("setup incomplete after {waited:?}: {done} of {wanted} {what}")]
    Setup {
        /// What was being waited for ("connections open").
        what: &'static str,
        /// How many got there.
        done: u64,
        /// How many had to.
        wanted: u64,
        /// How long the tool waited.
        waited: Duration,
    },
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A results file is not the JSON this tool writes.
    #[error("{path} is not a switchboard-bench result")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
}
