//! Progress bars (indicatif, on stderr; hidden when stderr is not a terminal or when asked):
//! jobs done, from the queue's O(1) counters, and rooms converged, from the comparator.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rcjobs_queue::JobState;
use sqlx::PgPool;

/// The two bars of a phase.
pub struct Progress {
    _multi: MultiProgress,
    jobs: ProgressBar,
    rooms: ProgressBar,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Progress {
    /// Bars for a phase named `phase` over `rooms` rooms; `hidden` draws nothing.
    pub fn new(phase: &str, rooms: u64, hidden: bool) -> Progress {
        let multi = MultiProgress::with_draw_target(if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(10)
        });
        let jobs = multi.add(ProgressBar::new(0));
        jobs.set_style(style(
            "{prefix:>24} [{bar:40.cyan/blue}] {pos}/{len} jobs {msg}",
        ));
        jobs.set_prefix(format!("{phase}: jobs done"));
        let rooms_bar = multi.add(ProgressBar::new(rooms));
        rooms_bar.set_style(style(
            "{prefix:>24} [{bar:40.green/white}] {pos}/{len} rooms {msg}",
        ));
        rooms_bar.set_prefix(format!("{phase}: rooms converged"));
        Progress {
            _multi: multi,
            jobs,
            rooms: rooms_bar,
        }
    }

    /// Updates the jobs bar from the queue's counters (finished jobs of every kind against
    /// finished + pending).
    pub async fn refresh_jobs(&self, pool: &PgPool, baseline_done: i64) {
        if self.jobs.is_hidden() {
            return;
        }
        if let Ok(s) = rcjobs_queue::stats(pool).await {
            let done: i64 = [
                JobState::Completed,
                JobState::Dead,
                JobState::Cancelled,
                JobState::Superseded,
            ]
            .iter()
            .map(|st| s.total(*st))
            .sum::<i64>()
                - baseline_done;
            let pending: i64 = [JobState::Ready, JobState::Running, JobState::Blocked]
                .iter()
                .map(|st| s.total(*st))
                .sum();
            let done = u64::try_from(done.max(0)).unwrap_or(0);
            self.jobs
                .set_length(done + u64::try_from(pending.max(0)).unwrap_or(0));
            self.jobs.set_position(done);
            self.jobs.set_message(format!(
                "({pending} pending, {} dead)",
                s.total(JobState::Dead)
            ));
        }
    }

    /// Sets the rooms bar.
    pub fn set_rooms(&self, converged: u64, total: u64) {
        self.rooms.set_length(total);
        self.rooms.set_position(converged);
    }

    /// Leaves the bars on screen.
    pub fn finish(&self) {
        self.jobs.finish();
        self.rooms.finish();
    }
}

/// Finished jobs so far (completed, dead, cancelled, superseded), from the counters.
pub async fn finished_jobs(pool: &PgPool) -> anyhow::Result<i64> {
    let s = rcjobs_queue::stats(pool).await?;
    Ok([
        JobState::Completed,
        JobState::Dead,
        JobState::Cancelled,
        JobState::Superseded,
    ]
    .iter()
    .map(|st| s.total(*st))
    .sum())
}

/// Jobs not finished (ready, running, blocked) and due, from the counters less the scheduled ones.
pub async fn pending_jobs(pool: &PgPool) -> anyhow::Result<i64> {
    let s = rcjobs_queue::stats(pool).await?;
    let pending: i64 = [JobState::Ready, JobState::Running, JobState::Blocked]
        .iter()
        .map(|st| s.total(*st))
        .sum();
    // the periodic reconcile's jobs for later periods are not work left to drain
    Ok(pending - rcjobs_queue::scheduled_jobs(pool).await?)
}

/// Dead jobs so far.
pub async fn dead_jobs(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(rcjobs_queue::stats(pool).await?.total(JobState::Dead))
}
