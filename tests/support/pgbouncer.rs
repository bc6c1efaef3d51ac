//! PgBouncer (1.21+, see `scripts/ensure-pgbouncer.sh`) as a child process on a free loopback port, in front of a PostgreSQL
//! server, in transaction pooling mode with trust auth. Installed or built when missing.
//! Killed (and its files removed) on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PgBouncer.
pub struct PgBouncer {
    child: Option<Child>,
    dir: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

/// A pgbouncer binary that pools protocol-level prepared statements (1.21+), from
/// `scripts/ensure-pgbouncer.sh`: an installed one that is new enough, Debian's package, or
/// Debian's newer source package built once into `/usr/local/lib/rcjobs-pgbouncer`.
pub fn ensure_installed() -> PathBuf {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-pgbouncer.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/ensure-pgbouncer.sh");
    assert!(out.status.success(), "scripts/ensure-pgbouncer.sh failed");
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(
        !path.is_empty(),
        "scripts/ensure-pgbouncer.sh printed no path"
    );
    PathBuf::from(path)
}

/// `pgbouncer --version`'s first line.
pub fn version(bin: &PathBuf) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

impl PgBouncer {
    /// Starts PgBouncer on a free port forwarding every database to `server_port` on
    /// 127.0.0.1, `pool_mode = transaction`, `default_pool_size` server connections per
    /// database, with `extra` lines appended to `[pgbouncer]`.
    pub fn start(server_port: u16, default_pool_size: u32, extra: &str) -> PgBouncer {
        let bin = ensure_installed();
        let dir = std::env::temp_dir().join(format!(
            "rcjobs-pgbouncer-{}-{}",
            std::process::id(),
            super::pg_cluster::free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pgbouncer dir");
        let port = super::pg_cluster::free_port();
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").expect("userlist");
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={server_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
             max_client_conn = 500\ndefault_pool_size = {default_pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
             server_reset_query =\nignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\nadmin_users = postgres\nstats_users = postgres\n{extra}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("pgbouncer.ini");
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_root {
            // PgBouncer refuses to run as root: it drops to `postgres` (-u), which must own its files.
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
        }
        let mut cmd = Command::new(&bin);
        if as_root {
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgbouncer");
        let mut b = PgBouncer {
            child: Some(child),
            dir,
            port,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(c) = b.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("pgbouncer exited ({st}):\n{}", b.log_tail());
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "pgbouncer did not listen:\n{}",
                b.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB` through PgBouncer.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// `SHOW STATS` of one database from the admin console (psql: the console speaks only the
    /// simple query protocol): column name -> value.
    pub fn stats(&self, db: &str) -> std::collections::HashMap<String, i64> {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-A",
                "-F",
                "\t",
                "-P",
                "footer=off",
                "-c",
                "SHOW STATS",
                "pgbouncer",
            ])
            .output()
            .expect("psql SHOW STATS");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let names: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        lines
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&db))
            .map(|cols| {
                names
                    .iter()
                    .zip(cols)
                    .filter_map(|(n, v)| v.parse().ok().map(|v| ((*n).to_owned(), v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
