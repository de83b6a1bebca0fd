//! Readers for `/proc/<pid>/stat` (CPU time) and `/proc/<pid>/status` (resident memory), and the
//! descriptor limit. Linux only.

use std::fs;

/// Clock ticks per second used by `/proc/<pid>/stat` (`USER_HZ`).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant of the running system.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let mut it = rest.split_ascii_whitespace();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = it.nth(11)?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Busy clock ticks of the whole machine, all CPUs: user+nice+system+irq+softirq+steal from
/// `/proc/stat` (idle and iowait excluded).
pub fn system_busy_ticks() -> Option<u64> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0))
}

/// Resident set size (VmRSS) of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns (soft, hard) afterwards.
pub fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    // rlim_t is u64 on Linux/glibc but not on every target.
    #[allow(clippy::unnecessary_cast)]
    (lim.rlim_cur as u64, lim.rlim_max as u64)
}

/// A named group of processes whose CPU time and memory are summed (e.g. nginx master + workers).
#[derive(Debug, Clone)]
pub struct PidGroup {
    pub name: String,
    pub pids: Vec<u32>,
}

impl PidGroup {
    /// Parses `name=pid[,pid...]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, pids) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PID[,PID...], got {s:?}"))?;
        let pids = pids
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                p.trim()
                    .parse::<u32>()
                    .map_err(|e| format!("bad pid {p:?} in {s:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if name.is_empty() || pids.is_empty() {
            return Err(format!("expected NAME=PID[,PID...], got {s:?}"));
        }
        Ok(Self {
            name: name.to_string(),
            pids,
        })
    }

    pub fn cpu_ticks(&self) -> u64 {
        self.pids.iter().filter_map(|&p| cpu_ticks(p)).sum()
    }

    pub fn rss_kib(&self) -> u64 {
        self.pids.iter().filter_map(|&p| rss_kib(p)).sum()
    }
}

/// Snapshot of every group's CPU ticks, plus this process's own (`loadgen`) and the whole
/// machine's busy ticks (`machine`, last).
pub fn cpu_snapshot(groups: &[PidGroup]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = groups
        .iter()
        .map(|g| (g.name.clone(), g.cpu_ticks()))
        .collect();
    v.push((
        "loadgen".to_string(),
        cpu_ticks(std::process::id()).unwrap_or(0),
    ));
    v.push(("machine".to_string(), system_busy_ticks().unwrap_or(0)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(rss_kib(me).is_some_and(|r| r > 0));
    }

    #[test]
    fn parses_groups() {
        let g = PidGroup::parse("nginx=1,2,3").map_err(|e| e.to_string());
        assert_eq!(g.map(|g| g.pids), Ok(vec![1, 2, 3]));
        assert!(PidGroup::parse("nginx").is_err());
        assert!(PidGroup::parse("x=a").is_err());
    }
}
