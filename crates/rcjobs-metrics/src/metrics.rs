//! The `Metrics` handle: every `rcjobs_*` metric, and one method per event that feeds them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::labels::{
    route_name, status_label, JobOutcome, LabelGuard, MembershipAction, MembershipFailure,
    ROCKETCHAT_ENDPOINTS,
};
use crate::MetricsError;

/// Buckets for job run time: sub-second convergence runs up to a slow full-course sync.
const RUN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Buckets for enqueue-to-start wait: from "picked up at once" to "queue backed up for an hour".
const WAIT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Buckets for one chat HTTP request.
const CHAT_BUCKETS: &[f64] = &[
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Settings fixed for the life of a [`Metrics`] handle.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Value of the `backend` label on chat metrics (one process talks to one chat backend).
    pub chat_backend: String,
    /// The routes of that backend labelled by name (the backend supplies its list); any
    /// other route is labelled `other`. The default is Rocket.Chat's, as is `chat_backend`'s.
    pub chat_endpoints: Vec<String>,
    /// Job kinds the process knows. Non-empty: exactly these are labelled (others become
    /// `other`) and their series exist at zero from the start. Empty: the first
    /// `max_kinds` identifier-like kinds seen are admitted.
    pub known_kinds: Vec<String>,
    /// Cap on distinct job kinds when `known_kinds` is empty.
    pub max_kinds: usize,
    /// Cap on distinct queue names.
    pub max_queues: usize,
    /// Cap on distinct job states reported by the queue sampler.
    pub max_states: usize,
    /// Cap on distinct database pool names.
    pub max_pools: usize,
    /// `version` label of `rcjobs_build_info`.
    pub version: String,
    /// `revision` label of `rcjobs_build_info` (a commit id, or `unknown`).
    pub revision: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            chat_backend: "rocketchat".to_string(),
            chat_endpoints: ROCKETCHAT_ENDPOINTS.iter().map(|r| r.to_string()).collect(),
            known_kinds: Vec::new(),
            max_kinds: 64,
            max_queues: 32,
            max_states: 16,
            max_pools: 8,
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("RCJOBS_GIT_REVISION")
                .unwrap_or("unknown")
                .to_string(),
        }
    }
}

/// Job states every (queue, kind) seen by the sampler is reported in, at zero if absent from
/// the sample (the queue's counters omit zero rows), so dashboards and alerts that select one
/// of them always find a series. `ready` and `blocked` are due work only: jobs waiting for a
/// future run time (delayed, backing off, the periodic reconcile's) are `scheduled`, so that
/// autoscaling and backlog alerts never count them. Other states pass through as sampled.
pub const JOB_STATES: [&str; 5] = ["ready", "running", "blocked", "scheduled", "dead"];

/// One row of the queue's counter table: how many jobs of `kind` in `queue` are in `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateCount<'a> {
    /// Queue name.
    pub queue: &'a str,
    /// Job kind.
    pub kind: &'a str,
    /// Job state as the queue names it (`ready`, `running`, `blocked`, `dead`, …).
    pub state: &'a str,
    /// Number of jobs.
    pub count: i64,
}

/// Every `rcjobs_*` metric of one process. Cheap to clone: clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

struct Inner {
    registry: Registry,
    series_names: Vec<String>,
    backend: String,
    kinds: LabelGuard,
    queues: LabelGuard,
    states: LabelGuard,
    pools: LabelGuard,
    endpoints: LabelGuard,
    reported_states: Mutex<HashSet<[String; 3]>>,

    jobs_enqueued: IntCounterVec,
    jobs_finished: IntCounterVec,
    job_run_seconds: HistogramVec,
    job_wait_seconds: HistogramVec,
    job_retries: IntCounterVec,
    jobs_dead: IntCounterVec,
    lease_expiries: IntCounter,
    jobs_in_flight: IntGaugeVec,
    worker_concurrency: IntGauge,
    worker_draining: IntGauge,
    queue_jobs: IntGaugeVec,
    oldest_ready_age: GaugeVec,
    queue_sampled_at: Gauge,
    chat_requests: IntCounterVec,
    chat_request_seconds: HistogramVec,
    chat_rate_limited: IntCounterVec,
    chat_paused_seconds: CounterVec,
    membership_changes: IntCounterVec,
    membership_failures: IntCounterVec,
    db_pool_size: IntGaugeVec,
    db_pool_idle: IntGaugeVec,
    db_pool_max: IntGaugeVec,
    capture_outbox_rows: IntGauge,
}

/// Registers collectors and remembers the series names they expose.
struct Builder {
    registry: Registry,
    series_names: Vec<String>,
}

impl Builder {
    fn add<C: Collector + Clone + 'static>(
        &mut self,
        collector: C,
        histogram: bool,
    ) -> Result<C, MetricsError> {
        for desc in collector.desc() {
            let name = desc.fq_name.clone();
            if histogram {
                for suffix in ["_bucket", "_sum", "_count"] {
                    self.series_names.push(format!("{name}{suffix}"));
                }
            } else {
                self.series_names.push(name);
            }
        }
        self.registry.register(Box::new(collector.clone()))?;
        Ok(collector)
    }

    fn counter(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?, false)
    }

    fn float_counter(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<CounterVec, MetricsError> {
        self.add(CounterVec::new(Opts::new(name, help), labels)?, false)
    }

    fn gauge(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, MetricsError> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?, false)
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, MetricsError> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels)?, true)
    }
}

impl Metrics {
    /// Creates the registry and every metric in it.
    pub fn new(config: MetricsConfig) -> Result<Self, MetricsError> {
        let mut b = Builder {
            registry: Registry::new(),
            series_names: Vec::new(),
        };

        let build_info = b.gauge(
            "rcjobs_build_info",
            "Always 1; labels carry the running version. count() of it = processes up.",
            &["version", "revision"],
        )?;
        let jobs_enqueued = b.counter(
            "rcjobs_jobs_enqueued_total",
            "Jobs enqueued by this process (SQL and other producers count in rcjobs_queue_jobs).",
            &["queue", "kind"],
        )?;
        let jobs_finished = b.counter(
            "rcjobs_jobs_finished_total",
            "Job attempts finished by this process, by how they ended.",
            &["kind", "outcome"],
        )?;
        let job_run_seconds = b.histogram(
            "rcjobs_job_run_duration_seconds",
            "Time a handler ran for one attempt.",
            &["kind"],
            RUN_BUCKETS,
        )?;
        let job_wait_seconds = b.histogram(
            "rcjobs_job_wait_seconds",
            "Time from a job becoming runnable (run_at) to a worker starting it.",
            &["kind"],
            WAIT_BUCKETS,
        )?;
        let job_retries = b.counter(
            "rcjobs_job_retries_total",
            "Attempts that failed retryably and were rescheduled with backoff.",
            &["kind"],
        )?;
        let jobs_dead = b.counter(
            "rcjobs_jobs_dead_total",
            "Jobs this process moved to the dead state (permanent failure or attempts used up).",
            &["kind"],
        )?;
        let lease_expiries = b.add(
            IntCounter::new(
                "rcjobs_lease_expiries_total",
                "Expired leases the sweeper reclaimed (the owning worker crashed or stalled).",
            )?,
            false,
        )?;
        let jobs_in_flight = b.gauge(
            "rcjobs_jobs_in_flight",
            "Jobs this process is running now.",
            &["kind"],
        )?;
        let worker_concurrency = b.add(
            IntGauge::new(
                "rcjobs_worker_concurrency",
                "Maximum jobs this process runs at once.",
            )?,
            false,
        )?;
        let worker_draining = b.add(
            IntGauge::new(
                "rcjobs_worker_draining",
                "1 while this process drains after a shutdown signal, else 0.",
            )?,
            false,
        )?;
        let queue_jobs = b.gauge(
            "rcjobs_queue_jobs",
            "Jobs by queue, kind and state, from the queue's counter table (global: every worker reports the same value, aggregate with max).",
            &["queue", "kind", "state"],
        )?;
        let oldest_ready_age = b.add(
            GaugeVec::new(
                Opts::new(
                    "rcjobs_queue_oldest_ready_age_seconds",
                    "Age of the oldest job that is runnable but not running (0 when none).",
                ),
                &["queue"],
            )?,
            false,
        )?;
        let queue_sampled_at = b.add(
            Gauge::new(
                "rcjobs_queue_stats_sampled_timestamp_seconds",
                "Unix time of the last queue counter sample taken by this process.",
            )?,
            false,
        )?;
        let chat_requests = b.counter(
            "rcjobs_chat_requests_total",
            "HTTP requests to the chat server by route and status (error = no HTTP answer).",
            &["backend", "endpoint", "status"],
        )?;
        let chat_request_seconds = b.histogram(
            "rcjobs_chat_request_duration_seconds",
            "Latency of one HTTP request to the chat server.",
            &["backend", "endpoint"],
            CHAT_BUCKETS,
        )?;
        let chat_rate_limited = b.counter(
            "rcjobs_chat_rate_limited_total",
            "HTTP 429 answers from the chat server.",
            &["backend", "endpoint"],
        )?;
        let chat_paused_seconds = b.float_counter(
            "rcjobs_chat_paused_seconds_total",
            "Seconds a route was paused after a 429, until the server's reset time.",
            &["backend", "endpoint"],
        )?;
        let membership_changes = b.counter(
            "rcjobs_membership_changes_total",
            "Changes applied on the chat server to match Moodle.",
            &["backend", "action"],
        )?;
        let membership_failures = b.counter(
            "rcjobs_membership_change_failures_total",
            "Wanted changes that could not be applied, recorded with a reason.",
            &["backend", "action", "reason"],
        )?;
        let db_pool_size = b.gauge(
            "rcjobs_db_pool_connections",
            "Open connections in a database pool.",
            &["pool"],
        )?;
        let db_pool_idle = b.gauge(
            "rcjobs_db_pool_idle_connections",
            "Idle connections in a database pool.",
            &["pool"],
        )?;
        let db_pool_max = b.gauge(
            "rcjobs_db_pool_max_connections",
            "Configured maximum connections of a database pool.",
            &["pool"],
        )?;
        let capture_outbox_rows = b.add(
            IntGauge::new(
                "rcjobs_capture_outbox_rows",
                "Rows waiting in the trigger set's capture outbox in the Moodle database (global: every worker reports the same value; a row may hold a whole statement's changes).",
            )?,
            false,
        )?;

        build_info
            .with_label_values(&[config.version.as_str(), config.revision.as_str()])
            .set(1);

        let kinds = if config.known_kinds.is_empty() {
            LabelGuard::new(config.max_kinds)
        } else {
            LabelGuard::closed(config.known_kinds.iter().map(String::as_str))
        };
        let endpoints = LabelGuard::closed(config.chat_endpoints.iter().map(String::as_str));
        let backend = LabelGuard::new(1).label(&config.chat_backend);

        let metrics = Metrics {
            inner: Arc::new(Inner {
                registry: b.registry,
                series_names: b.series_names,
                backend,
                kinds,
                queues: LabelGuard::new(config.max_queues),
                states: LabelGuard::new(config.max_states),
                pools: LabelGuard::new(config.max_pools),
                endpoints,
                reported_states: Mutex::new(HashSet::new()),
                jobs_enqueued,
                jobs_finished,
                job_run_seconds,
                job_wait_seconds,
                job_retries,
                jobs_dead,
                lease_expiries,
                jobs_in_flight,
                worker_concurrency,
                worker_draining,
                queue_jobs,
                oldest_ready_age,
                queue_sampled_at,
                chat_requests,
                chat_request_seconds,
                chat_rate_limited,
                chat_paused_seconds,
                membership_changes,
                membership_failures,
                db_pool_size,
                db_pool_idle,
                db_pool_max,
                capture_outbox_rows,
            }),
        };
        metrics.init_membership();
        for state in JOB_STATES {
            metrics.inner.states.label(state);
        }
        for kind in &config.known_kinds {
            metrics.kind_label(kind);
        }
        Ok(metrics)
    }

    /// The underlying registry, to add process-specific collectors or gather directly.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Every series name this registry can expose (histograms as `_bucket`/`_sum`/`_count`),
    /// whether or not it has samples yet: the contract dashboards and alerts are checked
    /// against.
    pub fn series_names(&self) -> Vec<String> {
        self.inner.series_names.clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.inner.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| MetricsError::Encode(e.to_string()))
    }

    // ---- jobs -------------------------------------------------------------------------

    /// `n` jobs of `kind` were enqueued on `queue` by this process.
    pub fn jobs_enqueued(&self, queue: &str, kind: &str, n: u64) {
        let queue = self.inner.queues.label(queue);
        let kind = self.kind_label(kind);
        self.inner
            .jobs_enqueued
            .with_label_values(&[queue.as_str(), kind.as_str()])
            .inc_by(n);
    }

    /// A worker started running a job that had been runnable for `wait`. Pair every call with
    /// exactly one [`Metrics::job_finished`]: together they keep the in-flight gauge.
    pub fn job_started(&self, kind: &str, wait: Duration) {
        let kind = self.kind_label(kind);
        let i = &self.inner;
        i.job_wait_seconds
            .with_label_values(&[kind.as_str()])
            .observe(wait.as_secs_f64());
        i.jobs_in_flight.with_label_values(&[kind.as_str()]).inc();
    }

    /// A job attempt that [`Metrics::job_started`] announced ended with `outcome` after
    /// running for `run`: [`Metrics::job_ran`] and [`Metrics::job_outcome`] in one call, for
    /// callers that know both at once.
    pub fn job_finished(&self, kind: &str, outcome: JobOutcome, run: Duration) {
        self.job_ran(kind, run);
        self.job_outcome(kind, outcome);
    }

    /// The handler of a job that [`Metrics::job_started`] announced returned after `run`
    /// (its outcome may be confirmed later, through [`Metrics::job_outcome`]). Ends the job's
    /// in-flight count.
    pub fn job_ran(&self, kind: &str, run: Duration) {
        let kind = self.kind_label(kind);
        let k = [kind.as_str()];
        self.inner
            .job_run_seconds
            .with_label_values(&k)
            .observe(run.as_secs_f64());
        self.inner.jobs_in_flight.with_label_values(&k).dec();
    }

    /// How a job attempt ended, once the database has recorded it. `Retried` also counts a
    /// retry and `Dead` a dead job.
    pub fn job_outcome(&self, kind: &str, outcome: JobOutcome) {
        let kind = self.kind_label(kind);
        let k = [kind.as_str()];
        let i = &self.inner;
        i.jobs_finished
            .with_label_values(&[kind.as_str(), outcome.as_str()])
            .inc();
        match outcome {
            JobOutcome::Retried => i.job_retries.with_label_values(&k).inc(),
            JobOutcome::Dead => i.jobs_dead.with_label_values(&k).inc(),
            _ => {}
        }
    }

    /// The sweeper reclaimed `n` jobs whose lease had expired.
    pub fn leases_expired(&self, n: u64) {
        self.inner.lease_expiries.inc_by(n);
    }

    /// The maximum number of jobs this process runs at once.
    pub fn set_worker_concurrency(&self, n: usize) {
        self.inner
            .worker_concurrency
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Rows waiting in the capture outbox (sampled from the Moodle database): work captured
    /// from Moodle that is not a job yet. Stuck above 0, the relay is not running.
    pub fn set_capture_outbox_rows(&self, rows: i64) {
        self.inner.capture_outbox_rows.set(rows);
    }

    /// Whether this process is draining (shutdown signal received, finishing running jobs).
    pub fn set_draining(&self, draining: bool) {
        self.inner.worker_draining.set(i64::from(draining));
    }

    // ---- queue sampler ----------------------------------------------------------------

    /// Replaces the jobs-by-state gauge with a full sample of the queue's counter table.
    /// Label sets reported before but absent now are set to 0 (their count went to zero), and
    /// each (queue, kind) gets all of [`JOB_STATES`] and an enqueued counter, at 0 if new.
    pub fn set_jobs_by_state<'a>(&self, rows: impl IntoIterator<Item = StateCount<'a>>) {
        let i = &self.inner;
        let mut now: std::collections::HashMap<[String; 3], i64> = std::collections::HashMap::new();
        for row in rows {
            let key = [
                i.queues.label(row.queue),
                self.kind_label(row.kind),
                i.states.label(row.state),
            ];
            for state in JOB_STATES {
                now.entry([key[0].clone(), key[1].clone(), i.states.label(state)])
                    .or_insert(0);
            }
            i.jobs_enqueued
                .with_label_values(&[key[0].as_str(), key[1].as_str()])
                .inc_by(0);
            // Folded rows (`other`) add up rather than overwrite each other.
            *now.entry(key).or_insert(0) += row.count;
        }
        let Ok(mut reported) = i.reported_states.lock() else {
            return;
        };
        for key in reported.iter() {
            if !now.contains_key(key) {
                i.queue_jobs.with_label_values(&key_refs(key)).set(0);
            }
        }
        for (key, count) in &now {
            i.queue_jobs.with_label_values(&key_refs(key)).set(*count);
            reported.insert(key.clone());
        }
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        i.queue_sampled_at.set(stamp);
    }

    /// Age of the oldest runnable, not running job on `queue`; `None` when there is none.
    pub fn set_oldest_ready_age(&self, queue: &str, age: Option<Duration>) {
        let queue = self.inner.queues.label(queue);
        self.inner
            .oldest_ready_age
            .with_label_values(&[queue.as_str()])
            .set(age.map_or(0.0, |a| a.as_secs_f64()));
    }

    // ---- chat -------------------------------------------------------------------------

    /// One HTTP request to the chat server on `endpoint` (a route name such as
    /// `groups.invite`; a path like `/api/v1/groups.invite?…` is reduced to it) answered with
    /// `status` (`None`: no HTTP answer) after `elapsed`. A 429 also counts as rate limited.
    pub fn chat_request(&self, endpoint: &str, status: Option<u16>, elapsed: Duration) {
        let endpoint = self.endpoint_label(endpoint);
        let i = &self.inner;
        let status = status_label(status);
        i.chat_requests
            .with_label_values(&[i.backend.as_str(), endpoint.as_str(), status.as_str()])
            .inc();
        i.chat_request_seconds
            .with_label_values(&[i.backend.as_str(), endpoint.as_str()])
            .observe(elapsed.as_secs_f64());
        if status == "429" {
            i.chat_rate_limited
                .with_label_values(&[i.backend.as_str(), endpoint.as_str()])
                .inc();
        }
    }

    /// `endpoint` is paused for every worker for `pause` (until the server's reset time).
    pub fn chat_paused(&self, endpoint: &str, pause: Duration) {
        let endpoint = self.endpoint_label(endpoint);
        let i = &self.inner;
        i.chat_paused_seconds
            .with_label_values(&[i.backend.as_str(), endpoint.as_str()])
            .inc_by(pause.as_secs_f64());
    }

    // ---- membership -------------------------------------------------------------------

    /// `n` changes of `action` were applied on the chat server.
    pub fn membership_applied(&self, action: MembershipAction, n: u64) {
        let i = &self.inner;
        i.membership_changes
            .with_label_values(&[i.backend.as_str(), action.as_str()])
            .inc_by(n);
    }

    /// `n` wanted changes of `action` could not be applied, for `reason`.
    pub fn membership_failed(&self, action: MembershipAction, reason: MembershipFailure, n: u64) {
        let i = &self.inner;
        i.membership_failures
            .with_label_values(&[i.backend.as_str(), action.as_str(), reason.as_str()])
            .inc_by(n);
    }

    // ---- database ---------------------------------------------------------------------

    /// Current state of the database pool named `pool` (`queue`, `moodle`, …).
    pub fn set_db_pool(&self, pool: &str, size: u32, idle: u32, max: u32) {
        let pool = self.inner.pools.label(pool);
        let p = [pool.as_str()];
        let i = &self.inner;
        i.db_pool_size.with_label_values(&p).set(i64::from(size));
        i.db_pool_idle.with_label_values(&p).set(i64::from(idle));
        i.db_pool_max.with_label_values(&p).set(i64::from(max));
    }

    // ---- label helpers ----------------------------------------------------------------

    /// The bounded label for a job kind; on first sight, its per-kind series start at zero so
    /// `rate()` and alerts see them before the first event.
    fn kind_label(&self, kind: &str) -> String {
        let (label, first) = self.inner.kinds.admit(kind);
        if first {
            let i = &self.inner;
            let k = [label.as_str()];
            for outcome in JobOutcome::ALL {
                i.jobs_finished
                    .with_label_values(&[label.as_str(), outcome.as_str()])
                    .inc_by(0);
            }
            i.job_retries.with_label_values(&k).inc_by(0);
            i.jobs_dead.with_label_values(&k).inc_by(0);
            i.jobs_in_flight.with_label_values(&k).add(0);
        }
        label
    }

    /// The bounded label for a chat route; on first sight its 429 and pause series start at 0.
    fn endpoint_label(&self, endpoint: &str) -> String {
        let (label, first) = self.inner.endpoints.admit(route_name(endpoint));
        if first {
            let i = &self.inner;
            let l = [i.backend.as_str(), label.as_str()];
            i.chat_rate_limited.with_label_values(&l).inc_by(0);
            i.chat_paused_seconds.with_label_values(&l).inc_by(0.0);
        }
        label
    }

    /// Membership series exist at zero from the start: the set is closed and small.
    fn init_membership(&self) {
        let i = &self.inner;
        for action in MembershipAction::ALL {
            i.membership_changes
                .with_label_values(&[i.backend.as_str(), action.as_str()])
                .inc_by(0);
            for reason in MembershipFailure::ALL {
                i.membership_failures
                    .with_label_values(&[i.backend.as_str(), action.as_str(), reason.as_str()])
                    .inc_by(0);
            }
        }
    }
}

fn key_refs(key: &[String; 3]) -> [&str; 3] {
    [key[0].as_str(), key[1].as_str(), key[2].as_str()]
}
