//! Real HTTP on 127.0.0.1: the metrics a worker's events produce, health and readiness.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{client, label_values, parse, value};
use rcjobs_metrics::{
    JobOutcome, MembershipAction, MembershipFailure, Metrics, MetricsConfig, MetricsServer,
    Readiness, StateCount,
};
use tokio::sync::oneshot;

/// A readiness check the test flips: `None` = ready, `Some(reason)` = not ready.
#[derive(Default)]
struct Switch(Mutex<Option<String>>);

#[async_trait]
impl Readiness for Switch {
    async fn ready(&self) -> Result<(), String> {
        match self.0.lock().unwrap().clone() {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

/// A readiness check that never answers (a hung database).
struct Hangs;

#[async_trait]
impl Readiness for Hangs {
    async fn ready(&self) -> Result<(), String> {
        std::future::pending().await
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), rcjobs_metrics::MetricsError>>,
}

impl Running {
    async fn start(metrics: Metrics, readiness: Arc<dyn Readiness>) -> Running {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), metrics, readiness)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Running {
            addr,
            stop: Some(tx),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn scrape(&self) -> Vec<common::Sample> {
        let resp = client().get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        parse(&resp.text().await.unwrap())
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops after shutdown")
            .unwrap()
            .unwrap();
    }
}

fn metrics() -> Metrics {
    Metrics::new(MetricsConfig {
        revision: "abc123".into(),
        ..MetricsConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn events_show_up_with_their_names_and_labels() {
    let m = metrics();
    let server = Running::start(m.clone(), Arc::new(Switch::default())).await;

    m.set_worker_concurrency(8);
    m.jobs_enqueued("default", "room_sync", 3);
    m.job_started("room_sync", Duration::from_millis(40));
    m.job_started("room_sync", Duration::from_millis(60));
    m.job_started("course_sync", Duration::from_secs(2));
    m.job_finished(
        "room_sync",
        JobOutcome::Completed,
        Duration::from_millis(120),
    );
    m.job_finished("room_sync", JobOutcome::Retried, Duration::from_millis(30));
    m.leases_expired(2);
    m.job_ran("course_sync", Duration::from_millis(10));
    m.job_outcome("course_sync", JobOutcome::Dead);
    m.job_started("course_sync", Duration::from_secs(1));
    m.set_jobs_by_state([
        StateCount {
            queue: "default",
            kind: "room_sync",
            state: "ready",
            count: 41,
        },
        StateCount {
            queue: "default",
            kind: "room_sync",
            state: "dead",
            count: 2,
        },
    ]);
    m.set_oldest_ready_age("default", Some(Duration::from_secs(7)));
    m.chat_request(
        "/api/v1/groups.invite",
        Some(200),
        Duration::from_millis(15),
    );
    m.chat_request("groups.invite", Some(429), Duration::from_millis(5));
    m.chat_request("groups.members?offset=100", None, Duration::from_secs(10));
    m.chat_paused("groups.invite", Duration::from_millis(1500));
    m.membership_applied(MembershipAction::Invite, 25);
    m.membership_failed(MembershipAction::Invite, MembershipFailure::UserMissing, 2);
    m.set_db_pool("queue", 5, 3, 10);

    let s = server.scrape().await;
    let v = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);

    assert_eq!(v("rcjobs_build_info", &[("revision", "abc123")]), Some(1.0));
    assert_eq!(v("rcjobs_worker_concurrency", &[]), Some(8.0));
    assert_eq!(v("rcjobs_worker_draining", &[]), Some(0.0));
    assert_eq!(
        v(
            "rcjobs_jobs_enqueued_total",
            &[("queue", "default"), ("kind", "room_sync")]
        ),
        Some(3.0)
    );
    for (outcome, want) in [
        ("completed", 1.0),
        ("retried", 1.0),
        ("dead", 0.0),
        ("lease_lost", 0.0),
    ] {
        assert_eq!(
            v(
                "rcjobs_jobs_finished_total",
                &[("kind", "room_sync"), ("outcome", outcome)]
            ),
            Some(want),
            "{outcome}"
        );
    }
    assert_eq!(
        v("rcjobs_job_retries_total", &[("kind", "room_sync")]),
        Some(1.0)
    );
    assert_eq!(
        v("rcjobs_jobs_dead_total", &[("kind", "room_sync")]),
        Some(0.0)
    );
    assert_eq!(v("rcjobs_lease_expiries_total", &[]), Some(2.0));
    assert_eq!(
        v("rcjobs_jobs_dead_total", &[("kind", "course_sync")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "rcjobs_jobs_finished_total",
            &[("kind", "course_sync"), ("outcome", "dead")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v("rcjobs_jobs_in_flight", &[("kind", "room_sync")]),
        Some(0.0)
    );
    assert_eq!(
        v("rcjobs_jobs_in_flight", &[("kind", "course_sync")]),
        Some(1.0)
    );
    assert_eq!(
        v("rcjobs_job_wait_seconds_count", &[("kind", "room_sync")]),
        Some(2.0)
    );
    assert_eq!(
        v(
            "rcjobs_job_wait_seconds_bucket",
            &[("kind", "room_sync"), ("le", "0.05")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "rcjobs_job_run_duration_seconds_count",
            &[("kind", "room_sync")]
        ),
        Some(2.0)
    );
    let run_sum = v(
        "rcjobs_job_run_duration_seconds_sum",
        &[("kind", "room_sync")],
    )
    .unwrap();
    assert!((run_sum - 0.15).abs() < 1e-9, "{run_sum}");
    assert_eq!(
        v(
            "rcjobs_queue_jobs",
            &[
                ("queue", "default"),
                ("kind", "room_sync"),
                ("state", "ready")
            ]
        ),
        Some(41.0)
    );
    assert_eq!(
        v(
            "rcjobs_queue_oldest_ready_age_seconds",
            &[("queue", "default")]
        ),
        Some(7.0)
    );
    assert!(v("rcjobs_queue_stats_sampled_timestamp_seconds", &[]).unwrap() > 1.7e9);

    let invite = [("backend", "rocketchat"), ("endpoint", "groups.invite")];
    assert_eq!(
        v(
            "rcjobs_chat_requests_total",
            &[invite[0], invite[1], ("status", "200")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "rcjobs_chat_requests_total",
            &[invite[0], invite[1], ("status", "429")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "rcjobs_chat_requests_total",
            &[("endpoint", "groups.members"), ("status", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(v("rcjobs_chat_rate_limited_total", &invite), Some(1.0));
    assert_eq!(
        v(
            "rcjobs_chat_rate_limited_total",
            &[("endpoint", "groups.members")]
        ),
        Some(0.0),
        "a route's 429 series exists at zero once the route is used"
    );
    assert_eq!(v("rcjobs_chat_paused_seconds_total", &invite), Some(1.5));
    assert_eq!(
        v("rcjobs_chat_request_duration_seconds_count", &invite),
        Some(2.0)
    );

    assert_eq!(
        v("rcjobs_membership_changes_total", &[("action", "invite")]),
        Some(25.0)
    );
    assert_eq!(
        v(
            "rcjobs_membership_changes_total",
            &[("action", "create_room")]
        ),
        Some(0.0),
        "every action exists at zero from the start"
    );
    assert_eq!(
        v(
            "rcjobs_membership_change_failures_total",
            &[("action", "invite"), ("reason", "user_missing")]
        ),
        Some(2.0)
    );
    assert_eq!(
        v("rcjobs_db_pool_connections", &[("pool", "queue")]),
        Some(5.0)
    );
    assert_eq!(
        v("rcjobs_db_pool_idle_connections", &[("pool", "queue")]),
        Some(3.0)
    );
    assert_eq!(
        v("rcjobs_db_pool_max_connections", &[("pool", "queue")]),
        Some(10.0)
    );

    // Every exposed name is one the registry declares, and all carry the prefix.
    let declared = m.series_names();
    for sample in &s {
        assert!(sample.name.starts_with("rcjobs_"), "{}", sample.name);
        assert!(
            declared.contains(&sample.name),
            "{} not declared",
            sample.name
        );
    }

    // A new sample replaces the old one; a state that vanished drops to zero.
    m.set_jobs_by_state([StateCount {
        queue: "default",
        kind: "room_sync",
        state: "ready",
        count: 5,
    }]);
    let s = server.scrape().await;
    assert_eq!(
        value(&s, "rcjobs_queue_jobs", &[("state", "ready")]),
        Some(5.0)
    );
    assert_eq!(
        value(&s, "rcjobs_queue_jobs", &[("state", "dead")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "rcjobs_queue_jobs", &[("state", "blocked")]),
        Some(0.0),
        "standard states are filled in at zero"
    );

    server.stop().await;
}

#[tokio::test]
async fn readyz_follows_the_readiness_check_and_healthz_stays_up() {
    let switch = Arc::new(Switch::default());
    let m = metrics();
    let server = Running::start(m.clone(), switch.clone()).await;
    let http = client();

    let get = |path: &'static str| {
        let http = http.clone();
        let url = server.url(path);
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);

    *switch.0.lock().unwrap() = Some("draining".into());
    m.set_draining(true);
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    assert_eq!(
        get("/healthz").await.0,
        200,
        "draining is alive, just not ready"
    );
    let s = server.scrape().await;
    assert_eq!(value(&s, "rcjobs_worker_draining", &[]), Some(1.0));

    *switch.0.lock().unwrap() = Some("database unreachable".into());
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("database unreachable"), "{body}");

    *switch.0.lock().unwrap() = None;
    assert_eq!(get("/readyz").await.0, 200);
    assert_eq!(get("/nope").await.0, 404);

    server.stop().await;
}

#[tokio::test]
async fn a_hung_readiness_check_answers_503_within_the_timeout() {
    let server = Running::start(metrics(), Arc::new(Hangs)).await;
    let started = std::time::Instant::now();
    let r = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("timed out"));
    assert!(started.elapsed() < rcjobs_metrics::READINESS_TIMEOUT + Duration::from_secs(3));
    server.stop().await;
}

#[tokio::test]
async fn label_values_stay_bounded() {
    let m = Metrics::new(MetricsConfig {
        max_kinds: 3,
        ..MetricsConfig::default()
    })
    .unwrap();
    let server = Running::start(m.clone(), Arc::new(Switch::default())).await;

    // Routes: unknown names, room ids in paths and junk all fold into "other".
    for route in [
        "groups.invite",
        "/api/v1/groups.invite",
        "groups.dropTable",
        "/api/v1/rooms/GENERAL/members",
        "",
        "channels.invite",
    ] {
        m.chat_request(route, Some(200), Duration::from_millis(1));
    }
    // Status codes: common ones kept, others by class.
    for code in [201, 418, 599, 302, 999] {
        m.chat_request("groups.info", Some(code), Duration::from_millis(1));
    }
    // Kinds: ids and junk fold at once; identifier-like kinds up to the cap, then "other".
    for i in 0..200 {
        m.job_started(&format!("kind_{i}"), Duration::ZERO);
        m.job_finished(&format!("kind_{i}"), JobOutcome::Completed, Duration::ZERO);
    }
    m.jobs_enqueued("default", "4711", 1);
    m.jobs_enqueued("default", "user@example.org", 1);
    // Queue sampler: a thousand queue names collapse into the cap plus "other".
    let names: Vec<String> = (0..1000).map(|i| format!("q{i}")).collect();
    m.set_jobs_by_state(names.iter().map(|q| StateCount {
        queue: q,
        kind: "kind_0",
        state: "ready",
        count: 1,
    }));

    let s = server.scrape().await;
    assert_eq!(
        label_values(&s, "rcjobs_chat_requests_total", "endpoint"),
        vec!["groups.info", "groups.invite", "other"]
    );
    assert_eq!(
        value(
            &s,
            "rcjobs_chat_requests_total",
            &[("endpoint", "groups.invite")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "rcjobs_chat_requests_total", &[("endpoint", "other")]),
        Some(4.0)
    );
    assert_eq!(
        label_values(&s, "rcjobs_chat_requests_total", "status"),
        vec!["200", "201", "3xx", "4xx", "5xx", "other"]
    );
    assert_eq!(
        label_values(&s, "rcjobs_jobs_finished_total", "kind"),
        vec!["kind_0", "kind_1", "kind_2", "other"]
    );
    assert_eq!(
        value(
            &s,
            "rcjobs_jobs_finished_total",
            &[("kind", "other"), ("outcome", "completed")]
        ),
        Some(197.0)
    );
    assert_eq!(
        value(&s, "rcjobs_jobs_enqueued_total", &[("kind", "other")]),
        Some(2.0)
    );
    let queues = label_values(&s, "rcjobs_queue_jobs", "queue");
    // "default" (from the enqueue above) took one of the 32 places.
    assert_eq!(queues.len(), 32, "31 more admitted queue names + other");
    assert_eq!(
        value(
            &s,
            "rcjobs_queue_jobs",
            &[("queue", "other"), ("state", "ready")]
        ),
        Some(1000.0 - 31.0),
        "folded rows add up"
    );
    // Whatever happened, no label value anywhere is longer than an identifier.
    for sample in &s {
        for v in sample.labels.values() {
            assert!(v.len() <= 64, "{v}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn known_kinds_are_exported_at_zero_and_closed() {
    let m = Metrics::new(MetricsConfig {
        known_kinds: vec!["room_sync".into(), "course_sync".into()],
        ..MetricsConfig::default()
    })
    .unwrap();
    let server = Running::start(m.clone(), Arc::new(Switch::default())).await;
    m.job_outcome("surprise_kind", JobOutcome::Superseded);
    let s = server.scrape().await;
    assert_eq!(
        label_values(&s, "rcjobs_jobs_dead_total", "kind"),
        vec!["course_sync", "other", "room_sync"]
    );
    assert_eq!(
        value(
            &s,
            "rcjobs_jobs_finished_total",
            &[("kind", "other"), ("outcome", "superseded")]
        ),
        Some(1.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn binding_a_taken_port_fails_with_the_address() {
    let first = Running::start(metrics(), Arc::new(Switch::default())).await;
    let err = MetricsServer::bind(first.addr, metrics(), Arc::new(Switch::default()))
        .await
        .err()
        .expect("second bind fails");
    assert!(err.to_string().contains(&first.addr.to_string()), "{err}");
    first.stop().await;
}
