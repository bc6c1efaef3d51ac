//! Machine-wide CPU time from `/proc/stat`, so the bench can report CPU per job and how much
//! the hypervisor stole: on a shared VM, jobs per second alone moves with the neighbours.

/// Cumulative machine-wide CPU ticks (USER_HZ) at one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    busy: u64,
    steal: u64,
    total: u64,
}

/// CPU used between two readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// CPU-seconds spent on work (user, nice, system, irq, softirq), all cores together.
    pub busy_s: f64,
    /// Share of all ticks the hypervisor gave to someone else.
    pub steal_pct: f64,
}

impl CpuTimes {
    /// Reads `/proc/stat`; `None` where there is none (not Linux) or it cannot be parsed.
    pub fn read() -> Option<CpuTimes> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the aggregate `cpu ` line of a `/proc/stat` text.
    pub fn parse(text: &str) -> Option<CpuTimes> {
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
        // already counted in user, so it is not added again.
        if v.len() < 8 {
            return None;
        }
        let busy = v[0] + v[1] + v[2] + v[5] + v[6];
        let steal = v[7];
        Some(CpuTimes {
            busy,
            steal,
            total: busy + v[3] + v[4] + steal,
        })
    }
}

/// CPU used between two readings; `None` if either is missing.
pub fn cpu_used(before: Option<CpuTimes>, now: Option<CpuTimes>) -> Option<CpuUse> {
    let (before, now) = (before?, now?);
    // USER_HZ is 100 on every Linux architecture we build for
    let busy_s = now.busy.saturating_sub(before.busy) as f64 / 100.0;
    let total = now.total.saturating_sub(before.total).max(1) as f64;
    let steal_pct = now.steal.saturating_sub(before.steal) as f64 * 100.0 / total;
    Some(CpuUse { busy_s, steal_pct })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  1000 10 500 8000 100 5 20 0 0 0\n\
                          cpu0 500 5 250 4000 50 3 10 0 0 0\n\
                          intr 12345\n";
    const AFTER: &str = "cpu  1150 10 530 8100 100 5 25 60 40 0\n\
                         cpu0 575 5 265 4050 50 3 12 30 20 0\n";

    #[test]
    fn busy_time_and_steal_come_from_the_aggregate_line() {
        let used =
            cpu_used(CpuTimes::parse(BEFORE), CpuTimes::parse(AFTER)).expect("both readings parse");
        // busy: user +150, system +30, softirq +5 ticks = 1.85 s; guest (+40) is inside user
        assert!((used.busy_s - 1.85).abs() < 1e-9, "{used:?}");
        // ticks: busy 185 + idle 100 + steal 60 = 345
        assert!(
            (used.steal_pct - 60.0 * 100.0 / 345.0).abs() < 1e-9,
            "{used:?}"
        );
    }

    #[test]
    fn unreadable_text_gives_no_figure_rather_than_a_wrong_one() {
        assert_eq!(CpuTimes::parse("intr 1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 x 4 5 6 7 8\n"), None);
        assert!(cpu_used(None, CpuTimes::parse(AFTER)).is_none());
    }

    #[test]
    fn a_counter_that_went_backwards_counts_as_zero() {
        let used =
            cpu_used(CpuTimes::parse(AFTER), CpuTimes::parse(BEFORE)).expect("both readings parse");
        assert_eq!(used.busy_s, 0.0);
        assert_eq!(used.steal_pct, 0.0);
    }
}
