//! Serves the rcjobs metrics of a simulated worker: every kind of event the real worker
//! reports, at a steady pace, with no database or chat server. It exists to exercise
//! `scripts/prometheus-dashboard-check.sh` (dashboards evaluated by a real Prometheus) before
//! or without a full deployment:
//!
//! ```text
//! cargo build -p rcjobs-metrics --example synthetic_load
//! scripts/prometheus-dashboard-check.sh --target 127.0.0.1:19464 --target 127.0.0.1:19465 -- \
//!   sh -c 'target/debug/examples/synthetic_load 127.0.0.1:19464 90 &
//!          target/debug/examples/synthetic_load 127.0.0.1:19465 90; wait'
//! ```
//!
//! Arguments: `ADDR` (metrics listen address) and `SECONDS` (how long to run; default 60).

use std::sync::Arc;
use std::time::Duration;

use rcjobs_metrics::{AlwaysReady, Metrics, MetricsConfig, MetricsServer};

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9464".into());
    let seconds: u64 = args.next().map_or(Ok(60), |s| s.parse())?;

    let metrics = Metrics::new(MetricsConfig {
        known_kinds: synthetic::KINDS.iter().map(|k| k.to_string()).collect(),
        ..MetricsConfig::default()
    })?;
    let server = MetricsServer::bind(addr.parse()?, metrics.clone(), Arc::new(AlwaysReady)).await?;
    println!("serving metrics on http://{}/metrics", server.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    synthetic::run(&metrics, deadline, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    metrics.set_draining(true);
    let _ = stop_tx.send(());
    serving.await??;
    Ok(())
}
