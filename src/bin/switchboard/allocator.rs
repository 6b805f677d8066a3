//! glibc's malloc, set for many long-lived threads of which few run at once.
//!
//! Two of its defaults make a thread-per-client server's memory creep up
//! under a steady load, though nothing leaks (the live heap, traced with
//! heaptrack through a soak, stayed between 0.83 and 1.02 MB):
//!
//! - **Arenas.** Threads that allocate at the same time get arenas of
//!   their own, up to eight per core, and each arena keeps what its
//!   threads freed for them. With thousands of threads, the memory held
//!   spreads over all of them: a mixed load grew the server's memory by a
//!   fifth in ten minutes. One arena per core is enough for two cores'
//!   worth of threads running.
//! - **The thread cache.** Every thread keeps up to seven freed chunks of
//!   each of 64 sizes for itself. Connection threads are reused for client
//!   after client, so each one's cache fills, over many minutes, with
//!   chunks of every size its clients' work has used: with one arena per
//!   core but the cache on, the soak's memory still grew 10% in fifteen
//!   minutes; with the cache off, 1.5% in five, and flat after that.
//!
//! Both are glibc tunables, which glibc reads only as a process starts, from
//! `GLIBC_TUNABLES`. So the binary starts itself again, once, at the very
//! beginning, with them set: `exec` keeps the process id, the arguments
//! and every descriptor. Tunables the operator set already are left alone.

use std::os::unix::process::CommandExt;
use std::process::Command;

const VARIABLE: &str = "GLIBC_TUNABLES";

/// Set for the restarted program: it never restarts twice, whatever glibc
/// shows of `GLIBC_TUNABLES` once it has read it.
pub const RESTARTED: &str = "SWITCHBOARD_MALLOC_TUNED";

/// Restarts this program with the tunables set, unless they already are
/// (by the operator, or by this same function a moment ago). Call it first
/// in `main`, before any thread starts. Returns only if there was nothing
/// to do or the restart failed, which costs memory, not correctness.
pub fn tune() {
    if std::env::var_os(RESTARTED).is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let wanted = [("glibc.malloc.arena_max", cores.to_string()), ("glibc.malloc.tcache_count", "0".into())];
    let current = std::env::var(VARIABLE).unwrap_or_default();
    let Some(tunables) = with_defaults(&current, &wanted) else { return };
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| "switchboard".into());
    // The binary's path, so that the process keeps its name (ps, pgrep);
    // /proc/self/exe, this very binary even if its file was replaced, when
    // the path cannot be read.
    let binary = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let error =
        Command::new(binary).arg0(program).args(args).env(VARIABLE, tunables).env(RESTARTED, "1").exec();
    eprintln!("switchboard: could not restart with {VARIABLE} set ({error}); going on without");
}

/// `current` (a `GLIBC_TUNABLES` value) with each of `wanted` that it does
/// not set added; `None` if it sets them all.
fn with_defaults(current: &str, wanted: &[(&str, String)]) -> Option<String> {
    let set = |name: &str| current.split(':').any(|tunable| tunable.split('=').next() == Some(name));
    let missing: Vec<String> =
        wanted.iter().filter(|(name, _)| !set(name)).map(|(name, value)| format!("{name}={value}")).collect();
    if missing.is_empty() {
        return None;
    }
    Some(
        current
            .split(':')
            .filter(|tunable| !tunable.is_empty())
            .map(str::to_owned)
            .chain(missing)
            .collect::<Vec<_>>()
            .join(":"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Vec<(&'static str, String)> {
        vec![("glibc.malloc.arena_max", "2".into()), ("glibc.malloc.tcache_count", "0".into())]
    }

    #[test]
    fn missing_tunables_are_added_and_the_operators_kept() {
        assert_eq!(
            with_defaults("", &wanted()).unwrap(),
            "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"
        );
        assert_eq!(
            with_defaults("glibc.malloc.tcache_count=3", &wanted()).unwrap(),
            "glibc.malloc.tcache_count=3:glibc.malloc.arena_max=2"
        );
    }

    #[test]
    fn nothing_to_do_once_both_are_set() {
        assert_eq!(with_defaults("glibc.malloc.arena_max=8:glibc.malloc.tcache_count=7", &wanted()), None);
    }
}
