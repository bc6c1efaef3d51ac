//! Issue 14 §3 and §6 through the real binary, without a database: the config file's
//! `[worker]` section is read (the README's example is accepted as written), an unknown key
//! in any section stops the command naming the key, and bad durations in flags or the file are
//! refused with a reason, never a panic.
//!
//! Every run points `DATABASE_URL` at a closed port, so a run that gets past the configuration
//! fails fast with a connection error instead of touching any database.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

struct Out {
    code: Option<i32>,
    stderr: String,
}

fn rcjobs(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_rcjobs"))
        .args(args)
        // Nothing listens on port 1: past the configuration, the command stops at connecting.
        .env("DATABASE_URL", "postgres://rcjobs@127.0.0.1:1/rcjobs")
        .env("ROCKETCHAT_URL", "http://127.0.0.1:1")
        .env("ROCKETCHAT_USER_ID", "u")
        .env("ROCKETCHAT_TOKEN", "t")
        .env_remove("RCJOBS_CONFIG")
        .env_remove("MOODLE_DATABASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("run rcjobs");
    Out {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "rcjobs-config-file-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// The README's example file, with its database URLs pointed at the closed port.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("```toml\n# rcjobs.toml")
        .expect("README has the example config file");
    let body = &readme[start + "```toml\n".len()..];
    let end = body.find("```").expect("closing fence");
    body[..end]
        .lines()
        .filter(|l| {
            !l.starts_with("database_url")
                && !l.starts_with("moodle_database_url")
                && !l.starts_with("handlers_config")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_example_is_accepted() {
    let path = file("readme", &readme_example());
    let out = rcjobs(&["--config", path.to_str().unwrap(), "worker"]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        !out.stderr.contains("configuration"),
        "the example must parse: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("127.0.0.1:1") || out.stderr.contains("connect"),
        "got past the configuration to the connection: {}",
        out.stderr
    );
}

#[test]
fn unknown_keys_in_any_section_are_refused() {
    for (name, text, key) in [
        ("top", "databse_url = \"postgres://x@y/z\"\n", "databse_url"),
        ("worker", "[worker]\nconcurency = 4\n", "concurency"),
        ("section", "[wroker]\nconcurrency = 4\n", "wroker"),
    ] {
        let path = file(name, text);
        let out = rcjobs(&["--config", path.to_str().unwrap(), "worker"]);
        let _ = std::fs::remove_file(&path);
        assert_eq!(out.code, Some(1), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(key), "{name}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn bad_durations_are_refused_with_a_reason() {
    for args in [
        &["worker", "--lease-ttl", "soon"][..],
        &["worker", "--retry-base", "300000000d"],
        &["worker", "--chat-timeout", "18446744073709551616"],
        &["worker", "--sweep-interval=-1"],
    ] {
        let out = rcjobs(args);
        assert_eq!(out.code, Some(2), "{args:?}: a usage error: {}", out.stderr);
        assert!(out.stderr.contains("invalid value"), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    for (name, text, needle) in [
        ("zero-ttl", "[worker]\nlease_ttl = 0\n", "at least 1s"),
        (
            "word",
            "[worker]\ndrain_timeout = \"a while\"\n",
            "drain_timeout",
        ),
        (
            "zero-retry",
            "[worker]\nretry_base = \"0s\"\n",
            "retry base",
        ),
    ] {
        let path = file(name, text);
        let out = rcjobs(&["--config", path.to_str().unwrap(), "worker"]);
        let _ = std::fs::remove_file(&path);
        assert_eq!(out.code, Some(1), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{name}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn integer_seconds_still_work() {
    // What scripts and the test harness pass today: past the configuration to the connection.
    let out = rcjobs(&[
        "worker",
        "--reconcile-interval",
        "30",
        "--retry-base",
        "5",
        "--lease-ttl",
        "10",
        "--drain-timeout",
        "0",
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        !out.stderr.contains("invalid value") && !out.stderr.contains("too short"),
        "{}",
        out.stderr
    );
}
