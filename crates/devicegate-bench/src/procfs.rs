//! CPU time and resident memory of the server's processes, from `/proc` (Linux).

use std::collections::BTreeSet;

/// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on every architecture
/// Linux supports to user space.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_secs: f64,
    pub rss_bytes: u64,
    /// Proportional set size: shared pages divided among the processes sharing them, so that
    /// PostgreSQL's shared buffers count once across its backends, not once per backend.
    pub pss_bytes: u64,
    pub processes: usize,
}

/// The processes `roots` and, at the time of the call, their descendants (PostgreSQL's
/// backends are children of its postmaster).
fn with_descendants(roots: &[u32]) -> BTreeSet<u32> {
    let mut set: BTreeSet<u32> = roots.iter().copied().collect();
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat_fields(pid)?.get(1)?.parse().ok()?)))
        .collect();
    loop {
        let before = set.len();
        for (pid, ppid) in &parents {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// The fields of `/proc/PID/stat` after the command name (which may hold spaces), so that
/// index 0 is the state, 1 the parent, 11 `utime` and 12 `stime`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// A `Key:  N kB` line of a `/proc` file, in bytes.
fn kb_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The summed CPU seconds and resident memory of `roots` and their descendants.
pub fn usage(roots: &[u32]) -> Option<Usage> {
    if roots.is_empty() {
        return None;
    }
    let mut u = Usage::default();
    for pid in with_descendants(roots) {
        let Some(f) = stat_fields(pid) else { continue };
        let ticks: f64 = f.get(11).and_then(|t| t.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|t| t.parse().ok()).unwrap_or(0.0);
        u.cpu_secs += ticks / TICKS_PER_SEC;
        u.rss_bytes += kb_field(&format!("/proc/{pid}/status"), "VmRSS:").unwrap_or(0);
        u.pss_bytes += kb_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:").unwrap_or(0);
        u.processes += 1;
    }
    Some(u)
}
