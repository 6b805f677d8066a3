//! What /proc says: a process's memory, threads and descriptors; the machine's memory, CPU and kernel.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One look at a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSample {
    /// Resident memory (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Threads (`Threads`).
    pub threads: u64,
    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fds: u64,
}

impl ProcessSample {
    /// Samples process `pid`.
    ///
    /// # Errors
    ///
    /// The I/O error if the process is gone or not ours to look at.
    pub fn of(pid: u32) -> io::Result<ProcessSample> {
        let dir = Path::new("/proc").join(pid.to_string());
        let status = fs::read_to_string(dir.join("status"))?;
        let missing = |name| io::Error::new(io::ErrorKind::InvalidData, format!("no {name} in status"));
        Ok(ProcessSample {
            rss_kib: field(&status, "VmRSS").ok_or_else(|| missing("VmRSS"))?,
            threads: field(&status, "Threads").ok_or_else(|| missing("Threads"))?,
            fds: fs::read_dir(dir.join("fd"))?.count() as u64,
        })
    }

    /// Samples this process.
    ///
    /// # Errors
    ///
    /// The I/O error if /proc cannot be read.
    pub fn own() -> io::Result<ProcessSample> {
        ProcessSample::of(std::process::id())
    }
}

/// CPU time (user and system, all threads) that process `pid` has used.
///
/// # Errors
///
/// The I/O error if the process is gone or its stat line is not as expected.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))?;
    cpu_ticks(&stat)
        .map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/PID/stat"))
}

/// The unit of /proc's CPU times. The kernel reports them in USER_HZ,
/// which is 100 on every Linux ABI the tool builds for.
const USER_HZ: u64 = 100;

/// `utime + stime` from a /proc/PID/stat line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time the whole machine has spent busy (every CPU, every process and
/// the kernel; not idle, not waiting for I/O), from the first line of /proc/stat.
///
/// # Errors
///
/// The I/O error if /proc/stat cannot be read or is not as expected.
pub fn machine_busy() -> io::Result<Duration> {
    let stat = fs::read_to_string("/proc/stat")?;
    busy_ticks(&stat)
        .map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/stat"))
}

/// `user nice system idle iowait irq softirq steal`: everything but idle and iowait.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = ticks[..] else { return None };
    Some(user + nice + system + irq + softirq + steal)
}

/// CPU use over an interval, in percent of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    /// This tool (all its threads).
    pub tool_percent: Option<f64>,
    /// The server, when its process id was given.
    pub server_percent: Option<f64>,
    /// Everything else the machine did meanwhile: on a shared machine, the
    /// work that competed with the run.
    #[serde(default)]
    pub others_percent: Option<f64>,
}

/// Takes CPU times at the start of an interval, to compare at its end.
#[derive(Debug)]
pub struct CpuWatch {
    began: Instant,
    tool: Option<Duration>,
    server: Option<(u32, Duration)>,
    machine: Option<Duration>,
}

impl CpuWatch {
    /// Starts watching this process, the machine and, if given, the server.
    pub fn start(server_pid: Option<u32>) -> CpuWatch {
        CpuWatch {
            began: Instant::now(),
            tool: cpu_time(std::process::id()).ok(),
            server: server_pid.and_then(|pid| Some((pid, cpu_time(pid).ok()?))),
            machine: machine_busy().ok(),
        }
    }

    /// The CPU use since `start`; a figure that cannot be read is left out.
    pub fn finish(&self) -> CpuUse {
        let wall = self.began.elapsed().as_secs_f64().max(1e-9);
        let percent =
            |before: Duration, after: Duration| after.saturating_sub(before).as_secs_f64() / wall * 100.0;
        let tool_percent = self.tool.zip(cpu_time(std::process::id()).ok()).map(|(b, a)| percent(b, a));
        let server_percent = self.server.and_then(|(pid, before)| Some(percent(before, cpu_time(pid).ok()?)));
        let machine_percent = self.machine.zip(machine_busy().ok()).map(|(b, a)| percent(b, a));
        // A server that was watched but can no longer be read (it died) would
        // leave its own CPU in "everything else".
        let server_known = self.server.is_none() || server_percent.is_some();
        let others_percent = machine_percent
            .filter(|_| server_known)
            .map(|machine| (machine - tool_percent.unwrap_or(0.0) - server_percent.unwrap_or(0.0)).max(0.0));
        CpuUse { tool_percent, server_percent, others_percent }
    }
}

/// The machine's `MemAvailable`, KiB: what could still be used without
/// swapping. Unlike a process's RSS it includes kernel memory (socket
/// buffers, thread stacks' page tables), so its drop is the whole cost.
///
/// # Errors
///
/// The I/O error if /proc/meminfo cannot be read or lacks the field.
pub fn mem_available_kib() -> io::Result<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo")?;
    field(&meminfo, "MemAvailable")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no MemAvailable in /proc/meminfo"))
}

/// This process's soft limit on open files, if /proc says.
pub fn open_files_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// The first number after `name:` in a /proc file of `Name: value` lines.
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

/// The machine a run happened on, for the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
    /// Processors the machine has online.
    pub cores: usize,
    /// Processors this tool was allowed to run on (its affinity mask).
    pub usable_cores: usize,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the facts; whatever cannot be read stays empty or zero.
    pub fn describe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        Machine {
            cpu,
            cores: cpuinfo.lines().filter(|line| line.starts_with("processor")).count(),
            usable_cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_proc_status() {
        let status = "Name:\tswitchboard\nVmRSS:\t   12345 kB\nThreads:\t7\n";
        assert_eq!(field(status, "VmRSS"), Some(12345));
        assert_eq!(field(status, "Threads"), Some(7));
        assert_eq!(field(status, "VmSwap"), None);
        assert_eq!(field(status, "Name"), None);
    }

    #[test]
    fn cpu_ticks_of_a_stat_line_with_an_awkward_name() {
        let stat = "1234 (conn 7) read) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 12345";
        assert_eq!(cpu_ticks(stat), Some(281));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn busy_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  100 2 30 5000 40 5 6 7 0 0\ncpu0 50 1 15 2500 20 2 3 3 0 0\n";
        assert_eq!(busy_ticks(stat), Some(100 + 2 + 30 + 5 + 6 + 7));
        assert_eq!(busy_ticks("cpu0 1 2 3\n"), None);
    }

    #[test]
    fn a_prefix_is_not_a_field() {
        assert_eq!(field("VmRSSx: 5 kB\nVmRSS: 6 kB\n", "VmRSS"), Some(6));
    }
}
