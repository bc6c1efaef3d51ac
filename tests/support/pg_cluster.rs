//! A throw-away PostgreSQL cluster for tests that restart the server or kill its backends:
//! `initdb` into a temp dir owned by the `postgres` OS user, `pg_ctl start` on a free
//! loopback port with trust auth, stopped (`-m immediate`) and removed on drop, panics included.
//! The shared server on 5432 is never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A running private cluster.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// Directory of the newest installed PostgreSQL's binaries (`/usr/lib/postgresql/N/bin`).
pub fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RCJOBS_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL binaries under /usr/lib/postgresql (Debian's postgresql package)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
        .1
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl PgCluster {
    /// Initialises and starts a cluster (blocking; call before spawning load).
    pub fn start() -> PgCluster {
        let bin = pg_bin_dir();
        let as_postgres = is_root();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rcjobs-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create cluster dir");
        if as_postgres {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown cluster dir",
            );
        }
        let mut c = PgCluster {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        let data = c.data_dir();
        let out = c
            .pg("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output();
        check(out, "initdb");
        // A few tries: the port is picked free, then bound by postgres a moment later.
        for attempt in 0..5 {
            c.port = free_port();
            let conf = format!(
                "\n# rcjobs test cluster\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 max_connections = 200\nfsync = off\nfull_page_writes = off\nshared_buffers = 128MB\n\
                 log_min_messages = warning\nlog_connections = off\n",
                c.port,
                c.dir.display()
            );
            std::fs::write(data.join("postgresql.auto.conf"), conf)
                .expect("write postgresql.auto.conf");
            let out = c.pg_ctl(&["start", "-t", "60"]).output();
            match out {
                Ok(o) if o.status.success() => return c,
                other => {
                    if attempt == 4 {
                        check(other, "pg_ctl start");
                    }
                }
            }
        }
        unreachable!("pg_ctl start either returned or panicked")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server log (for failure messages).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn pg(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut c = self.pg("pg_ctl");
        c.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .arg("-w")
            .args(args);
        c
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data dir, the log and the socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database (blocking, through psql).
    pub fn create_db(&self, name: &str) {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qAt",
                "-c",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .output();
        check(out, "create database");
    }

    /// `pg_ctl restart -m MODE` (`fast` or `immediate`); returns how long the server was down.
    pub fn restart(&self, mode: &str) -> Duration {
        let t = Instant::now();
        let out = self.pg_ctl(&["restart", "-m", mode, "-t", "60"]).output();
        check(out, "pg_ctl restart");
        t.elapsed()
    }

    /// Last lines of the server log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl(&["stop", "-m", "immediate", "-t", "30"])
            .output();
        if std::env::var_os("RCJOBS_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn run_ok(c: &mut Command, what: &str) {
    check(c.output(), what);
}

fn check(out: std::io::Result<Output>, what: &str) {
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{what} failed ({}):\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{what}: {e}"),
    }
}
