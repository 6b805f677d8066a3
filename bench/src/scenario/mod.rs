//! The four kinds of load, a module each, and what they share: the settings every run takes, and starting event loops.

pub mod churn;
pub mod echo;
pub mod fanout;
pub mod idle;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tungstenite::protocol::WebSocketConfig;

use crate::clock::Clock;
use crate::error::Result;
use crate::event_loop::{Connecting, Driver, EventLoop, Finished};
use crate::latency::Latency;
use crate::outcome::Endings;
use crate::report::{Connections, Report, Throughput};
use crate::run::{Run, Shared};
use crate::sequence::SequenceCounts;
use crate::source::Sources;
use crate::system::{CpuUse, Machine};
use crate::target::{Dial, Target};

/// How long the close handshakes at the end may take before the rest are dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connects and upgrades under way at once in each event loop.
const CONNECTS_AT_ONCE: usize = 64;

/// What every load scenario is told, whatever its kind.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// The server.
    pub target: Target,
    /// The local addresses connections leave from, round robin.
    pub sources: Sources,
    /// The measured interval.
    pub duration: Duration,
    /// How long to wait, after it, for messages in flight.
    pub drain: Duration,
    /// The bound on connecting (and joining, for fanout).
    pub setup_timeout: Duration,
    /// Event-loop threads.
    pub threads: usize,
    /// The server's name in reports.
    pub label: String,
    /// The workload's name in reports, if not the scenario's own.
    pub case: Option<String>,
    /// tungstenite's read buffer per client connection, bytes.
    pub read_buffer: usize,
    /// The server's process, when it runs here: sampled for CPU and memory.
    pub server_pid: Option<u32>,
    /// The command line, for the record.
    pub command: String,
}

impl LoadSettings {
    fn connecting(&self) -> Connecting {
        Connecting {
            websocket: WebSocketConfig::default().read_buffer_size(self.read_buffer),
            timeout: self.setup_timeout,
            at_once: CONNECTS_AT_ONCE,
        }
    }

    /// Connections to `path` on the server, one for each of the scenario's
    /// connection `numbers` (which pick their source addresses).
    fn dials(&self, path: &str, numbers: &[usize]) -> Vec<Dial> {
        numbers.iter().map(|&i| self.dial(self.target, path, i)).collect()
    }

    /// Connection number `i`, to `path` on `target`.
    fn dial(&self, target: Target, path: &str, i: usize) -> Dial {
        Dial { target, path: path.to_owned(), from: self.sources.pick(i) }
    }

    fn title(&self, case: &str) -> String {
        format!("{case} {}", self.label)
    }

    /// A report with the fields every scenario fills the same way.
    fn report(&self, scenario: &str, default_case: String, path: &str, mut description: String) -> Report {
        if !self.sources.is_empty() {
            description.push_str(&format!(", connecting from {}", self.sources));
        }
        Report {
            tool: concat!("switchboard-bench ", env!("CARGO_PKG_VERSION")).to_owned(),
            scenario: scenario.to_owned(),
            case: self.case.clone().unwrap_or(default_case),
            label: self.label.clone(),
            description,
            target: self.target.url(path),
            command: self.command.clone(),
            machine: Machine::describe(),
            started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            measured_s: 0.0,
            connections: Connections::default(),
            throughput: Throughput::default(),
            paced: false,
            latency_of: String::new(),
            latency: Default::default(),
            messages: SequenceCounts::default(),
            endings: Endings::default(),
            resources: None,
            cpu: CpuUse::default(),
            details: Default::default(),
        }
    }
}

/// Starts one event loop per plan on `run`: each plan is where that loop's
/// connections go, and its driver.
fn start_loops<D: Driver + Send + 'static>(
    run: &mut Run<Finished<D>>,
    name: &str,
    load: &LoadSettings,
    plans: Vec<(Vec<Dial>, D)>,
    shared: &Arc<Shared>,
    clock: Clock,
) -> Result<()> {
    for (i, (dials, driver)) in plans.into_iter().enumerate() {
        let event_loop = EventLoop::new(&dials, load.connecting(), driver, Arc::clone(shared), clock)?;
        let waker = event_loop.waker();
        run.spawn(format!("{name}-loop-{i}"), Some(waker), move || event_loop.run())?;
    }
    Ok(())
}

/// Deals `count` connections over `loops` loops, round-robin: the global
/// numbers of the connections of each loop.
fn deal(count: usize, loops: usize) -> Vec<Vec<usize>> {
    let loops = loops.clamp(1, count.max(1));
    (0..loops).map(|i| (i..count).step_by(loops).collect()).collect()
}

/// The results every event-loop scenario merges from its loops.
struct Merged {
    upgrades: Latency,
    endings: Endings,
}

impl Merged {
    fn from<D>(finished: &[Finished<D>]) -> Merged {
        let mut merged = Merged { upgrades: Latency::new(), endings: Endings::default() };
        for f in finished {
            merged.upgrades.merge(&f.upgrades);
            merged.endings += &f.endings;
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_dealt_round_robin() {
        assert_eq!(deal(5, 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(deal(2, 4), vec![vec![0], vec![1]]);
        assert_eq!(deal(0, 3), vec![Vec::<usize>::new()]);
    }
}
