//! Every dashboard panel and alert rule evaluated by a real Prometheus (Debian's package,
//! installed by the script when missing) scraping two simulated workers over HTTP on
//! 127.0.0.1. The end-to-end version with real workers runs the same script with a real
//! workload; this one proves the expressions against Prometheus without a deployment.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use rcjobs_metrics::{AlwaysReady, Metrics, MetricsConfig, MetricsServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_returns_data_from_a_real_prometheus() {
    let mut addrs = Vec::new();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let metrics = Metrics::new(MetricsConfig {
            known_kinds: common::synthetic::KINDS
                .iter()
                .map(|k| k.to_string())
                .collect(),
            ..MetricsConfig::default()
        })
        .unwrap();
        let server = MetricsServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            metrics.clone(),
            Arc::new(AlwaysReady),
        )
        .await
        .unwrap();
        addrs.push(server.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        tasks.push(tokio::spawn(server.run(async move {
            let _ = rx.await;
        })));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        tokio::spawn(async move {
            common::synthetic::run(&metrics, deadline, std::future::pending()).await;
        });
    }

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/prometheus-dashboard-check.sh"
    );
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(script);
    for a in &addrs {
        cmd.arg("--target").arg(a.to_string());
    }
    // The load runs in this process; the workload only has to stay up while Prometheus scrapes.
    cmd.args([
        "--scrapes",
        "5",
        "--load-seconds",
        "12",
        "--timeout",
        "120",
        "--",
        "sleep",
        "600",
    ]);
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(420), cmd.output())
        .await
        .expect("the dashboard check finishes within 7 minutes (apt install included)")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dashboard check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    assert!(stdout.contains("all panels returned data"), "{stdout}");
    let ok_lines = stdout.lines().filter(|l| l.starts_with("  ok  ")).count();
    assert!(
        ok_lines >= 60,
        "only {ok_lines} panel expressions evaluated:\n{stdout}"
    );

    for stop in stops {
        let _ = stop.send(());
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}
