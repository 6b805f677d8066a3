//! A program run as a child process and talked to line by line: typed lines
//! on its stdin, printed lines read from its stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};

use super::{PATIENCE, wait_until};

pub struct Program {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// All of stderr, once the pipe closes: read all along, so that a
    /// chatty program never blocks on a full pipe.
    stderr: Receiver<String>,
    /// Every line so far, for failure messages and for the caller at the end.
    seen: Vec<String>,
    /// Lines read while waiting for another, not yet claimed by an `expect`.
    unmatched: Vec<String>,
}

impl Program {
    /// Starts `command` with its stdin, stdout and stderr piped to the test.
    pub fn start(command: Command) -> Program {
        Program::start_reading(command, None)
    }

    /// As [`start`](Program::start), but the test reads only the first
    /// `lines` lines the program prints, then closes the pipe, as `head`
    /// does: the program's next write to stdout fails.
    pub fn start_head(command: Command, lines: usize) -> Program {
        Program::start_reading(command, Some(lines))
    }

    fn start_reading(mut command: Command, head: Option<usize>) -> Program {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (printed, lines) = unbounded();
        thread::spawn(move || {
            let mut read = BufReader::new(stdout).lines().map_while(Result::ok);
            match head {
                None => read.for_each(|line| {
                    let _ = printed.send(line);
                }),
                Some(wanted) => {
                    let taken: Vec<String> = read.by_ref().take(wanted).collect();
                    // Closed before the lines are handed on: once the test
                    // has them, nothing more the program prints can reach
                    // the pipe.
                    drop(read);
                    for line in taken {
                        let _ = printed.send(line);
                    }
                }
            }
        });
        let mut errors = child.stderr.take().unwrap();
        let (written, stderr) = unbounded();
        thread::spawn(move || {
            let mut text = String::new();
            let _ = errors.read_to_string(&mut text);
            let _ = written.send(text);
        });
        let stdin = child.stdin.take();
        Program { child, stdin, lines, stderr, seen: Vec::new(), unmatched: Vec::new() }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line that satisfies `wanted` and returns it. Lines may
    /// come in any order (several connections print at once); each is
    /// matched once.
    pub fn expect(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        if let Some(i) = self.unmatched.iter().position(|line| wanted(line)) {
            return self.unmatched.remove(i);
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                    self.unmatched.push(line);
                }
                Err(_) => panic!("no line {what} within {PATIENCE:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    pub fn expect_exact(&mut self, line: &str) {
        self.expect(line, |l| l == line);
    }

    pub fn type_line(&mut self, line: &str) {
        self.type_bytes(format!("{line}\n").as_bytes());
    }

    /// Writes `bytes` to stdin as they are, text or not.
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a signal by name (`INT`, `TERM`), as Ctrl-C or a service manager does.
    pub fn signal(&self, name: &str) {
        super::process::signal(self.id(), name);
    }

    /// Closes stdin, as EOF does, and waits for the exit; returns the status
    /// and every line printed.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let (status, printed, _) = self.wait(PATIENCE);
        (status, printed)
    }

    /// Waits at most `timeout` for the program to exit; then returns its
    /// status, every line it printed, and what it wrote to stderr.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, Vec<String>, String) {
        let child = &mut self.child;
        let mut status = None;
        let exited = wait_until(timeout, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        assert!(exited, "still running after {timeout:?}; printed:\n{}", self.seen.join("\n"));
        // The reader thread ends when the pipe closes, after the last line.
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            self.seen.push(line);
        }
        let stderr = self.stderr.recv_timeout(PATIENCE).unwrap_or_default();
        (status.unwrap(), std::mem::take(&mut self.seen), stderr)
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // A failed test leaves no program running behind it.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
