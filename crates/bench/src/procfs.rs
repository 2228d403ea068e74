//! CPU time and resident memory of a process, read from `/proc/<pid>`.

use std::time::Instant;

/// One reading of a process's counters.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    pub at: Instant,
    /// user + system CPU time in seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `pid` `None` means this process.
pub fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    Some(ProcSample {
        at: Instant::now(),
        cpu_s: cpu_seconds(&stat)?,
        rss_kib: vm_rss_kib(&status)?,
    })
}

/// Open file descriptors of process `pid` (sockets included).
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are at 11 and 12 after the state field.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 })
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU use between two samples, in percent of one core.
pub fn cpu_percent(a: &ProcSample, b: &ProcSample) -> f64 {
    let wall = b.at.saturating_duration_since(a.at).as_secs_f64();
    if wall <= 0.0 {
        0.0
    } else {
        100.0 * (b.cpu_s - a.cpu_s) / wall
    }
}

/// Server and load-generator resource use over a measured window.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Resources {
    pub server_pid: Option<u32>,
    pub server_cpu_percent: Option<f64>,
    pub server_rss_kib_start: Option<u64>,
    pub server_rss_kib_end: Option<u64>,
    pub bench_cpu_percent: Option<f64>,
}

/// Samples taken at the start of a measured window.
pub struct Window {
    server_pid: Option<u32>,
    server: Option<ProcSample>,
    bench: Option<ProcSample>,
}

impl Window {
    pub fn start(server_pid: Option<u32>) -> Self {
        Window {
            server_pid,
            server: server_pid.and_then(|p| sample(Some(p))),
            bench: sample(None),
        }
    }

    pub fn finish(&self) -> Resources {
        let server_end = self.server_pid.and_then(|p| sample(Some(p)));
        let bench_end = sample(None);
        Resources {
            server_pid: self.server_pid,
            server_cpu_percent: self
                .server
                .zip(server_end)
                .map(|(a, b)| cpu_percent(&a, &b)),
            server_rss_kib_start: self.server.map(|s| s.rss_kib),
            server_rss_kib_end: server_end.map(|s| s.rss_kib),
            bench_cpu_percent: self.bench.zip(bench_end).map(|(a, b)| cpu_percent(&a, &b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_name() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 5 1000 200";
        let s = cpu_seconds(stat).unwrap();
        // SAFETY: as above.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert!((s - 400.0 / hz).abs() < 1e-9);
    }

    #[test]
    fn reads_self() {
        let s = sample(None).unwrap();
        assert!(s.rss_kib > 0);
    }
}
