//! Issue 14 §5, "the Dockerfile builds from the repository alone", without a Docker daemon:
//! `scripts/validate-deploy.sh --dockerfile-only` checks that every path `cargo build` reads
//! (manifests, Cargo.lock, sources, build scripts, include_str!/sqlx::migrate! targets) is
//! COPYed into the builder stage and not excluded by .dockerignore, and that no COPY reaches
//! outside the repository. The check is proved to refuse both kinds of broken Dockerfile.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn check(dockerfile: Option<&PathBuf>, dockerignore: Option<&PathBuf>) -> Output {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut c = Command::new("bash");
    c.arg(format!("{root}/scripts/validate-deploy.sh"))
        .arg("--dockerfile-only")
        .current_dir(root)
        .env_remove("RCJOBS_DOCKERFILE")
        .env_remove("RCJOBS_DOCKERIGNORE");
    if let Some(f) = dockerfile {
        c.env("RCJOBS_DOCKERFILE", f);
    }
    if let Some(f) = dockerignore {
        c.env("RCJOBS_DOCKERIGNORE", f);
    }
    c.output().expect("run scripts/validate-deploy.sh")
}

fn temp(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("rcjobs-ctx-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_shipped_dockerfile_copies_everything_the_build_reads() {
    let o = check(None, None);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("dockerfile checks passed"), "{out}");
}

#[test]
fn a_dockerfile_missing_build_inputs_or_reaching_outside_is_refused() {
    let df = temp(
        "Dockerfile",
        "FROM rust AS builder\nWORKDIR /src\nCOPY Cargo.toml Cargo.lock ./\nCOPY src src\n\
         COPY crates crates\nCOPY ../shared shared\n\
         RUN cargo build --release --locked --bin rcjobs\nFROM debian\n",
    );
    let o = check(Some(&df), None);
    let _ = std::fs::remove_file(&df);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("../shared reaches outside"), "{out}");
    // The queue crate reads the top-level migrations/ (sqlx::migrate!, its build script).
    assert!(out.contains("Dockerfile: migrations ("), "{out}");
    // The crates were copied correctly: no complaint about them.
    assert!(!out.contains("crates/rcjobs-moodle/sql"), "{out}");
}

#[test]
fn a_dockerignore_hiding_build_inputs_is_refused() {
    let ignore = temp("dockerignore", "target\n.git\ncrates/*/sql\n");
    let o = check(None, Some(&ignore));
    let _ = std::fs::remove_file(&ignore);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains(".dockerignore excludes crates/rcjobs-moodle/sql/moodle_schema.sql"),
        "{out}"
    );
}
