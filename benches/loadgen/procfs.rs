//! CPU time and memory of the daemons under test, from `/proc/<pid>/stat` and `status`.

use std::io;

pub struct ProcSample {
    pub pid: u32,
    /// utime + stime of all the process's threads, live and exited, in seconds.
    pub cpu_s: f64,
    /// VmHWM: peak resident set size since start.
    pub hwm_kib: u64,
    /// VmRSS: resident set size now.
    pub rss_kib: u64,
}

pub fn sample(pid: u32, clk_tck: u64) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .ok_or_else(|| io::Error::other("unexpected /proc/<pid>/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/<pid>/stat"))
    };
    let cpu_s = (ticks(14)? + ticks(15)?) as f64 / clk_tck as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        pid,
        cpu_s,
        hwm_kib: kib("VmHWM:"),
        rss_kib: kib("VmRSS:"),
    })
}
