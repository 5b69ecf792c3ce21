//! The generator's own CPU time, so that a run can say when the generator was the bottleneck.
//!
//! Read from `/proc/self/stat` (user + system time of every thread of the process, including
//! threads that already exited) rather than `getrusage`, because the workspace forbids `unsafe`.

use std::time::Duration;

/// The kernel reports these times in USER_HZ ticks, which Linux fixes at 100 per second on every
/// architecture it exports to user space.
const TICKS_PER_SECOND: u64 = 100;

/// Why the CPU time cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CpuTimeError {
    /// `/proc/self/stat` cannot be read (not Linux?).
    #[error("cannot read /proc/self/stat: {0}")]
    Read(#[from] std::io::Error),
    /// The file does not have the expected fields.
    #[error("unexpected /proc/self/stat format")]
    Format,
}

/// User plus system CPU time consumed by this process so far.
pub fn process_cpu_time() -> Result<Duration, CpuTimeError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    cpu_time_from_stat(&stat).ok_or(CpuTimeError::Format)
}

/// Parses `utime` and `stime` (fields 14 and 15) from a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted after its `)`.
pub fn cpu_time_from_stat(stat: &str) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user_ticks: u64 = fields.next()?.parse().ok()?;
    let system_ticks: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (user_ticks + system_ticks) * 1000 / TICKS_PER_SECOND,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_after_the_command_name() {
        let stat = "4242 (load gen) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(cpu_time_from_stat(stat), Some(Duration::from_secs(3)));
        assert_eq!(cpu_time_from_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        let before = process_cpu_time().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time().unwrap() >= before);
    }
}
