//! `rcjobs worker` as real OS processes (the binary Cargo built for this package): spawn with
//! an environment pointing at a database and a chat server, SIGKILL, SIGTERM, restart.
//! Every process still running is killed when its handle drops (panics included).

use rcjobs_sim::SimHandle;
use sqlx::PgPool;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start a worker process.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// `DATABASE_URL` (queue + sync state, and Moodle unless `moodle_url` is set).
    pub database_url: String,
    /// `MOODLE_DATABASE_URL`, when it differs.
    pub moodle_url: Option<String>,
    /// `ROCKETCHAT_URL`.
    pub chat_url: String,
    /// `ROCKETCHAT_USER_ID`.
    pub chat_user_id: String,
    /// `ROCKETCHAT_TOKEN`.
    pub chat_token: String,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--metrics-addr` (port 0 = any free port).
    pub metrics_addr: SocketAddr,
    /// Extra environment (e.g. a listen URL).
    pub env: Vec<(String, String)>,
    /// Extra arguments after `worker`.
    pub args: Vec<String>,
    /// Directory for the processes' logs.
    pub log_dir: PathBuf,
}

impl WorkerSpec {
    /// A spec that talks to `sim` as its bot, with concurrency 16, metrics on a free port and
    /// logs in `log_dir`.
    pub fn for_sim(database_url: &str, sim: &SimHandle, log_dir: PathBuf) -> WorkerSpec {
        WorkerSpec {
            database_url: database_url.to_owned(),
            moodle_url: None,
            chat_url: sim.base_url(),
            chat_user_id: sim.bot_user_id().to_owned(),
            chat_token: sim.bot_token().to_owned(),
            concurrency: 16,
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            env: Vec::new(),
            args: Vec::new(),
            log_dir,
        }
    }
}

/// One `rcjobs worker` process.
pub struct WorkerProc {
    child: Option<Child>,
    /// Name in logs (`w0`, `w1`, ...; restarts keep the name).
    pub name: String,
    /// Its log file (stderr).
    pub log: PathBuf,
    started: u32,
}

impl WorkerProc {
    /// Spawns `rcjobs worker` with `spec`; `name` names the log file.
    pub fn spawn(spec: &WorkerSpec, name: &str) -> WorkerProc {
        let mut p = WorkerProc {
            child: None,
            name: name.to_owned(),
            log: PathBuf::new(),
            started: 0,
        };
        p.start(spec);
        p
    }

    /// (Re)starts the process (after a kill or exit).
    pub fn start(&mut self, spec: &WorkerSpec) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        std::fs::create_dir_all(&spec.log_dir).expect("log dir");
        self.started += 1;
        self.log = spec
            .log_dir
            .join(format!("{}-{}.log", self.name, self.started));
        let log = File::create(&self.log).expect("worker log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rcjobs"));
        cmd.arg("worker")
            .arg("--concurrency")
            .arg(spec.concurrency.to_string())
            .arg("--metrics-addr")
            .arg(spec.metrics_addr.to_string())
            .args(&spec.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &spec.database_url)
            .env("ROCKETCHAT_URL", &spec.chat_url)
            .env("ROCKETCHAT_USER_ID", &spec.chat_user_id)
            .env("ROCKETCHAT_TOKEN", &spec.chat_token)
            .env(
                "RUST_LOG",
                std::env::var("RCJOBS_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        if let Some(m) = &spec.moodle_url {
            cmd.env("MOODLE_DATABASE_URL", m);
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn rcjobs worker"));
    }

    /// The OS pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// SIGKILL and reap.
    pub fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (graceful drain); waits up to `deadline` for the exit and returns its status
    /// (None = still running, then killed).
    pub fn sigterm(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let t = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if t.elapsed() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the current log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until the process has registered in `rcjobs.worker` (its claim loop is up) and
    /// returns its worker id. Panics with the log if it exits or `deadline` passes.
    pub async fn wait_registered(&mut self, pool: &PgPool, deadline: Duration) -> uuid::Uuid {
        let pid = self.pid().expect("worker process running") as i32;
        let t = Instant::now();
        loop {
            let id: Option<uuid::Uuid> = sqlx::query_scalar(
                "SELECT id FROM rcjobs.worker WHERE pid = $1 ORDER BY started_at DESC LIMIT 1",
            )
            .bind(pid)
            .fetch_optional(pool)
            .await
            .ok()
            .flatten();
            if let Some(id) = id {
                return id;
            }
            if !self.is_running() {
                panic!(
                    "worker {} exited before registering:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if t.elapsed() > deadline {
                panic!(
                    "worker {} did not register within {deadline:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The metrics address the process printed (`metrics server listening addr=…`), once it
    /// appears in the log.
    pub fn metrics_addr_from_log(&self) -> Option<SocketAddr> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines()
            .filter(|l| l.contains("metrics server listening"))
            .find_map(|l| {
                let at = l.find("addr=")? + 5;
                l[at..].split_whitespace().next()?.parse().ok()
            })
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.sigkill();
    }
}
