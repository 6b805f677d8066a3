//! The `switchboard` binary as a child process: for signals, exit codes, and
//! counting a whole process's threads and file descriptors.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};

use super::{PATIENCE, wait_until};

pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    /// Every line the server logs, as it logs them, but for those already
    /// read into `seen`.
    pub log: Receiver<String>,
    /// The lines read from `log` so far: those up to the address, and
    /// those [`wait_for_line`](Process::wait_for_line) went through.
    seen: Vec<String>,
}

impl Process {
    /// Starts the binary on a free loopback port with `args`, and waits until
    /// it logs where it listens.
    pub fn start(args: &[&str]) -> Process {
        Process::start_logging(args, "info")
    }

    /// As [`start`](Process::start), logging at `level`.
    pub fn start_logging(args: &[&str], level: &str) -> Process {
        Process::start_with_env(args, &[], level)
    }

    /// As [`start`](Process::start), logging at `level`, with these
    /// environment variables set.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)], level: &str) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the switchboard binary");
        let stderr = child.stderr.take().unwrap();
        let (lines, log) = unbounded();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        let addr = loop {
            let line = log.recv_deadline(deadline).expect("the server logs its address");
            let addr = line
                .split("listening on http")
                .nth(1)
                .map(|rest| rest.trim_start_matches('s').trim_start_matches("://"))
                .map(|rest| rest.split('/').next().unwrap().parse());
            seen.push(line);
            if let Some(addr) = addr {
                break addr.unwrap();
            }
        };
        Process { child, addr, log, seen }
    }

    /// Waits for the first line the server logs, from its start, that
    /// contains `text`, at most [`PATIENCE`]; returns it.
    pub fn wait_for_line(&mut self, text: &str) -> String {
        self.wait_for_line_within(text, PATIENCE)
    }

    /// [`wait_for_line`](Self::wait_for_line), for a line due later than
    /// the usual patience allows.
    pub fn wait_for_line_within(&mut self, text: &str, patience: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|line| line.contains(text)) {
            return line.clone();
        }
        let deadline = Instant::now() + patience;
        loop {
            let line =
                self.log.recv_deadline(deadline).unwrap_or_else(|_| panic!("no line with {text:?} logged"));
            self.seen.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`INT`, `TERM`).
    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Interrupts the server, waits for it to exit, and returns every line
    /// it logged.
    pub fn stop(mut self) -> Vec<String> {
        self.signal("INT");
        self.wait_exit(PATIENCE).expect("the server exits");
        let mut lines = std::mem::take(&mut self.seen);
        // The reader thread ends when the pipe closes, after the last line.
        while let Ok(line) = self.log.recv_timeout(PATIENCE) {
            lines.push(line);
        }
        lines
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }

    /// `/stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let reply = super::http(self.addr, "GET /stats HTTP/1.1\r\nHost: t\r\n\r\n");
        serde_json::from_str(&reply.body).expect("/stats is JSON")
    }

    /// The number of threads the process has now.
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
    }

    /// The number of file descriptors the process has open now.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).unwrap().count()
    }
}

/// Runs the binary with `args` and these environment variables, without
/// listening anywhere unless `args` says so, and waits at most
/// [`PATIENCE`] for it to exit: for command lines that stop at once, or
/// never start. Returns its status, the lines it printed, and its stderr.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, Vec<String>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(args).envs(env.iter().copied()).env("RUST_LOG", "info");
    super::Program::start(command).wait(PATIENCE)
}

/// Sends `pid` a signal by name (`INT`, `TERM`), as Ctrl-C or a service
/// manager does.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{name} failed");
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
