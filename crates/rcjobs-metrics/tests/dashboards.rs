//! Every PromQL expression we ship (Grafana panels and variables, alert rules, autoscaler
//! queries) may only name metrics this crate's registry exposes: a renamed metric or a typo
//! fails here, without a Prometheus. (scripts/prometheus-dashboard-check.sh evaluates the
//! same expressions against a live Prometheus.)
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rcjobs_metrics::{Metrics, MetricsConfig};
use serde_json::Value;

/// Metrics Prometheus itself attaches to every target; allowed in alert rules only.
const PROMETHEUS_BUILTINS: &[&str] = &["up"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn exposed() -> BTreeSet<String> {
    Metrics::new(MetricsConfig::default())
        .unwrap()
        .series_names()
        .into_iter()
        .collect()
}

/// Identifiers that PromQL treats as operators, modifiers or aggregations (not metrics).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "inf",
    "nan",
];

/// The metric names an expression selects. A small PromQL lexer: strings, label matchers
/// `{…}`, ranges `[…]`, grouping lists after by/without/on/ignoring/group_*, function names
/// (an identifier followed by `(`), numbers, durations and Grafana `$variables` are skipped;
/// what remains are metric names.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_until = |i: &mut usize, open: char, close: char| {
        let mut depth = 0;
        while *i < chars.len() {
            let c = chars[*i];
            if c == '"' || c == '\'' || c == '`' {
                *i += 1;
                while *i < chars.len() && chars[*i] != c {
                    if chars[*i] == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    *i += 1;
                    return;
                }
            }
            *i += 1;
        }
        panic!("unbalanced {open}{close} in {expr}");
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' => skip_until(&mut i, '{', '}'),
            '[' => skip_until(&mut i, '[', ']'),
            '$' => {
                i += 1;
                if i < chars.len() && chars[i] == '{' {
                    skip_until(&mut i, '{', '}');
                } else {
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit()) =>
            {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let ident: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let next = chars.get(j).copied();
                let grouping = matches!(
                    ident.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
                if grouping && next == Some('(') {
                    i = j;
                    skip_until(&mut i, '(', ')');
                } else if next == Some('(') || KEYWORDS.contains(&ident.as_str()) {
                    // A function or aggregation name, or an operator keyword.
                } else {
                    out.push(ident);
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[test]
fn the_lexer_finds_metrics_and_nothing_else() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, kind) (rate(rcjobs_job_run_duration_seconds_bucket{kind=~"$kind", x="a{b}"}[$__rate_interval])))
           / on(instance) group_left(version) max without (pool) (rcjobs_x offset 5m) > bool 1e3 or vector(0) and up"#,
    );
    assert_eq!(
        names,
        vec!["rcjobs_job_run_duration_seconds_bucket", "rcjobs_x", "up"]
    );
}

/// (where, expression) for every panel target and template variable of every dashboard.
fn dashboard_exprs() -> Vec<(String, String)> {
    let dir = repo().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        4,
        "queue, chat, membership, workers: {files:?}"
    );
    let mut out = Vec::new();
    let mut uids = BTreeSet::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_string()),
            "duplicate uid"
        );
        assert!(d["title"].as_str().unwrap().starts_with("rcjobs / "));
        let mut ids = BTreeSet::new();
        for panel in d["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap();
            assert!(
                ids.insert(panel["id"].as_i64().unwrap()),
                "{name}: duplicate panel id"
            );
            let pos = &panel["gridPos"];
            assert!(
                pos["x"].as_i64().unwrap() + pos["w"].as_i64().unwrap() <= 24,
                "{name}/{title}: wider than the grid"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}/{title}"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}/{title}: no query");
            for t in targets {
                out.push((
                    format!("{name} / {title}"),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                let q = v["query"]["query"].as_str().unwrap();
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|r| r.rsplit_once(','))
                    .map(|(series, _label)| series.trim().to_string())
                    .unwrap_or_else(|| panic!("{name}: variable query {q}"));
                out.push((format!("{name} / variable {}", v["name"]), inner));
            }
        }
    }
    out
}

#[test]
fn every_dashboard_query_names_only_exposed_metrics() {
    let exposed = exposed();
    let exprs = dashboard_exprs();
    assert!(exprs.len() > 40, "{} expressions", exprs.len());
    let mut used = BTreeSet::new();
    for (place, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: selects no metric: {expr}");
        for n in names {
            assert!(
                exposed.contains(&n),
                "{place}: unknown metric {n} in {expr}"
            );
            used.insert(n);
        }
    }
    // The dashboards cover the registry: every metric family shows up somewhere.
    let families: BTreeSet<String> = exposed
        .iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_string()
        })
        .collect();
    for family in families {
        assert!(
            used.iter().any(|u| u.starts_with(&family)),
            "no dashboard panel shows {family}"
        );
    }
}

fn yaml(path: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo().join(path)).unwrap()).unwrap()
}

#[test]
fn alert_rules_and_autoscaler_queries_name_only_exposed_metrics() {
    let exposed = exposed();
    let mut exprs: Vec<(String, String)> = Vec::new();
    let alerts = yaml("deploy/prometheus/alerts.yml");
    for group in alerts["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            exprs.push((
                format!("alert {}", rule["alert"].as_str().unwrap()),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert!(exprs.len() >= 10);
    let scaled = yaml("deploy/kubernetes/base/worker-scaledobject.yaml");
    for t in scaled["spec"]["triggers"].as_sequence().unwrap() {
        exprs.push((
            "ScaledObject".into(),
            t["metadata"]["query"].as_str().unwrap().to_string(),
        ));
    }
    let adapter = yaml("deploy/kubernetes/overlays/hpa/prometheus-adapter-rules.yaml");
    for r in adapter["rules"]["external"].as_sequence().unwrap() {
        exprs.push((
            "prometheus-adapter".into(),
            r["seriesQuery"].as_str().unwrap().to_string(),
        ));
    }
    for (place, expr) in exprs {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{place}: selects no metric: {expr}");
        for n in names {
            assert!(
                exposed.contains(&n) || PROMETHEUS_BUILTINS.contains(&n.as_str()),
                "{place}: unknown metric {n} in {expr}"
            );
        }
    }
}
