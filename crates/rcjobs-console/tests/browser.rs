//! The console as an operator uses it: a real headless Chromium (Debian's `chromium` and
//! `chromedriver`, installed by scripts/ensure-chromium.sh) signs in, filters, clicks every
//! action, and the database is checked after each click. Screenshots of each page go to
//! `$RCJOBS_CONSOLE_SCREENSHOTS` (docs/console/ when refreshing the docs), else a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use rcjobs_testkit::TestDb;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "console-test-token-0123456789";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A minimal W3C WebDriver client over chromedriver's HTTP API.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
}

impl Browser {
    async fn start() -> Browser {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (run scripts/ensure-chromium.sh)");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        rcjobs_testkit::wait_for("chromedriver", Duration::from_secs(20), || async {
            let r = http.get(format!("{base}/status")).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=en-GB"]
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Browser {
            http,
            base,
            session,
            driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut rq = self.http.request(method, url);
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let v: Value = rq.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The element, waiting up to 5 s for it (a click's navigation may still be loading).
    async fn find(&self, css: &str) -> String {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let v: Value = self
                .http
                .post(&url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return id.to_string();
            }
            if std::time::Instant::now() > deadline {
                let src = self.call(reqwest::Method::GET, "/source", None).await;
                panic!(
                    "no element {css}: {}\npage: {}",
                    v["value"],
                    src.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn count(&self, css: &str) -> usize {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array().map_or(0, Vec::len)
    }

    async fn click_only(&self, css: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks a button that submits a form, and waits for the next page (a new document has
    /// a new body element).
    async fn click(&self, css: &str) {
        let before = self.find("body").await;
        self.click_only(css).await;
        self.wait_new_page(&before).await;
    }

    async fn wait_new_page(&self, before: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.find("body").await == before {
            assert!(std::time::Instant::now() < deadline, "no new page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Clicks a button whose form asks for a confirmation, and accepts the dialog.
    async fn click_and_confirm(&self, css: &str) {
        let before = self.find("body").await;
        self.click_only(css).await;
        self.call(reqwest::Method::POST, "/alert/accept", Some(json!({})))
            .await;
        self.wait_new_page(&before).await;
    }

    async fn screenshot(&self, name: &str) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = std::env::var_os("RCJOBS_CONSOLE_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("rcjobs-console-screenshots"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An urlencoded form body (reqwest is built without its `form` feature).
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn console(db: &TestDb, config: rcjobs_console::Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pool = db.pool.clone();
    tokio::spawn(async move {
        rcjobs_console::serve_on(listener, pool, config, std::future::pending())
            .await
            .unwrap()
    });
    format!("http://{addr}")
}

async fn one<T>(db: &TestDb, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn seed() -> (TestDb, i64, i64) {
    let db = TestDb::new().await;
    rcjobs_queue::migrate(&db.pool).await.unwrap();
    rcjobs_producer::register_kinds(&db.pool).await.unwrap();
    rcjobs_worker::migrate(&db.pool).await.unwrap();
    let job = |cmid: i64| {
        rcjobs_producer::Job::parse_kind(
            rcjobs_producer::Kind::SynchronizeGroup,
            &json!({"cmid": cmid, "courseid": 3}),
        )
        .unwrap()
        .to_new_job(&Default::default())
    };
    let s42 = rcjobs_queue::enqueue(&db.pool, &job(42)).await.unwrap().id;
    rcjobs_queue::enqueue(&db.pool, &job(43)).await.unwrap();
    let dead = rcjobs_queue::enqueue(&db.pool, &job(44)).await.unwrap().id;
    sqlx::query("UPDATE rcjobs.job SET last_error = 'chat server said 403: forbidden', errors = '[{\"attempt\": 1, \"at\": \"2026-12-06T10:00:00Z\", \"class\": \"forbidden\", \"error\": \"chat server said 403: forbidden\"}]' WHERE id = $1")
        .bind(dead)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("SELECT rcjobs.finish_jobs(ARRAY[$1::bigint], ARRAY['dead'])")
        .bind(dead)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO rcjobs_sync.room (cmid, courseid, room_id, room_name, state, last_sync_at, last_result, member_count)
         VALUES (77, 3, 'GENERAL77', 'Physics 101 chat', 'active', now() - interval '3 minutes', 'partial', 24)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO rcjobs_sync.outcome (cmid, subject, userid, code, detail) VALUES
         (77, 'student7', 7, 'user_missing', 'no chat account for student7')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    (db, s42, dead)
}

#[tokio::test]
async fn an_operator_signs_in_and_uses_every_page() {
    let (db, s42, dead) = seed().await;
    let url = console(
        &db,
        rcjobs_console::Config {
            token: Some(TOKEN.into()),
            refresh_secs: 0,
            ..Default::default()
        },
    )
    .await;
    let b = Browser::start().await;

    // read-only until signed in: no action buttons
    b.goto(&format!("{url}/queues")).await;
    assert!(b.text("#who").await.contains("read-only"));
    assert_eq!(b.count("button[id^=pause-]").await, 0);

    b.goto(&format!("{url}/login")).await;
    b.type_into("#token", "wrong-token-000000000000000").await;
    b.click("#sign-in").await;
    assert!(b.text("#error").await.contains("wrong token"));
    b.goto(&format!("{url}/login")).await;
    b.type_into("#token", TOKEN).await;
    b.type_into("#name", "alice").await;
    b.click("#sign-in").await;
    assert_eq!(b.text("#who").await, "alice (token)");

    // overview from the counters
    rcjobs_queue::stats::compact_stats(&db.pool).await.unwrap();
    assert!(b.text("#card-due").await.starts_with('2'));
    b.goto(&url).await;
    assert!(b.text("#card-due").await.starts_with('2'));
    assert!(b.text("#card-dead").await.starts_with('1'));
    assert!(b.text("#error-classes").await.contains("forbidden"));
    b.screenshot("overview").await;

    // pause a kind: the row is written with who did it; resume removes it
    b.goto(&format!("{url}/queues")).await;
    b.type_into(
        "form:has(#pause-kind-synchronize_group) input[name=reason]",
        "chat upgrade",
    )
    .await;
    b.click("#pause-kind-synchronize_group").await;
    assert!(b.text("#notice").await.contains("paused"));
    let by: String = one(
        &db,
        "SELECT paused_by FROM rcjobs.pause WHERE scope = 'kind' AND name = 'synchronize_group'",
    )
    .await;
    assert_eq!(by, "alice (token)");
    assert!(b
        .text("#status-kind-synchronize_group")
        .await
        .contains("paused"));
    b.screenshot("queues").await;

    // the jobs page shows paused jobs as paused, filtered by payload
    b.goto(&format!("{url}/jobs")).await;
    b.type_into("#f-payload", "cmid=42").await;
    b.click("#apply").await;
    assert_eq!(b.count("#jobs tr[data-id]").await, 1);
    assert!(b.text("#jobs").await.contains("paused"));
    b.screenshot("jobs").await;
    b.goto(&format!("{url}/queues")).await;
    b.click("#resume-kind-synchronize_group").await;
    let n: i64 = one(&db, "SELECT count(*) FROM rcjobs.pause").await;
    assert_eq!(n, 0);

    // job detail: lane, reschedule, run now
    b.goto(&format!("{url}/jobs/{s42}")).await;
    assert!(b.text("#lane").await.contains("heads lane"));
    b.type_into("#reschedule-at", "+2h").await;
    b.click("#do-reschedule").await;
    let later: bool = one(
        &db,
        &format!("SELECT run_at > now() + interval '1 hour' FROM rcjobs.job WHERE id = {s42}"),
    )
    .await;
    assert!(later, "rescheduled two hours ahead");
    b.screenshot("job").await;
    b.click("#do-run-now").await;
    assert!(b.text("#notice").await.contains("due now"));
    let due: bool = one(
        &db,
        &format!("SELECT run_at <= now() FROM rcjobs.job WHERE id = {s42}"),
    )
    .await;
    assert!(due);

    // bulk retry of the dead jobs whose error says forbidden: count, confirm, requeued
    b.goto(&format!("{url}/jobs?state=dead&error=forbidden"))
        .await;
    b.click_only("#bulk-action option[value=retry]").await;
    b.click("#bulk-preview").await;
    assert_eq!(b.text("#bulk-count").await, "1 job(s) match this filter.");
    b.screenshot("bulk-confirm").await;
    b.click("#bulk-confirm").await;
    assert!(b.text("#notice").await.contains("1 job(s) done"));
    let back: i64 = one(
        &db,
        &format!("SELECT count(*) FROM rcjobs.job WHERE id = {dead}"),
    )
    .await;
    assert_eq!(back, 1, "requeued into the hot table");

    // delete asks in the browser first
    b.goto(&format!("{url}/jobs/{dead}")).await;
    b.click_and_confirm("#do-delete").await;
    assert!(b.text("#notice").await.contains("deleted"));
    let gone: i64 = one(
        &db,
        &format!("SELECT count(*) FROM rcjobs.job WHERE id = {dead}"),
    )
    .await;
    assert_eq!(gone, 0);

    // rooms: outcomes shown, sync now queues a synchronize_group at priority -10
    b.goto(&format!("{url}/rooms")).await;
    assert!(b.text("#rooms").await.contains("user_missing"));
    b.screenshot("rooms").await;
    b.click("#sync-77").await;
    assert!(b.text("#notice").await.contains("queued"));
    let prio: i16 = one(
        &db,
        "SELECT priority FROM rcjobs.job WHERE kind = 'synchronize_group' AND payload->>'cmid' = '77'",
    )
    .await;
    assert_eq!(prio, -10);
    b.goto(&format!("{url}/rooms/77")).await;
    assert!(b.text("#outcomes").await.contains("student7"));
    b.screenshot("room").await;
}

#[tokio::test]
async fn actions_need_the_token_and_the_csrf_token() {
    let (db, s42, _) = seed().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // no token configured: read-only, every action refused
    let ro = console(&db, rcjobs_console::Config::default()).await;
    let page = http.get(format!("{ro}/jobs/{s42}")).send().await.unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = page.text().await.unwrap();
    assert!(html.contains("no RCJOBS_UI_TOKEN"));
    assert!(!html.contains("do-run-now"));
    let csrf = cookie.split_once('=').unwrap().1.to_string();
    let r = http
        .post(format!("{ro}/jobs/{s42}/cancel"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // with a token: the bearer header acts; a session without the CSRF token does not
    let rw = console(
        &db,
        rcjobs_console::Config {
            token: Some(TOKEN.into()),
            ..Default::default()
        },
    )
    .await;
    let login = http
        .post(format!("{rw}/login"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", csrf.as_str()),
            ("token", TOKEN),
            ("name", "bob"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let session = login
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let both = format!("{cookie}; {session}");
    let forged = http
        .post(format!("{rw}/jobs/{s42}/cancel"))
        .header("cookie", &both)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "0".repeat(48).as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let cross = http
        .post(format!("{rw}/jobs/{s42}/cancel"))
        .header("cookie", &both)
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let still: i64 = one(
        &db,
        &format!("SELECT count(*) FROM rcjobs.job WHERE id = {s42}"),
    )
    .await;
    assert_eq!(still, 1, "nothing cancelled by the refused requests");
    let ok = http
        .post(format!("{rw}/jobs/{s42}/cancel"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("x", "y")]))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let gone: i64 = one(
        &db,
        &format!("SELECT count(*) FROM rcjobs.job WHERE id = {s42}"),
    )
    .await;
    assert_eq!(gone, 0);

    // --read-only: even the token cannot act
    let shown = console(
        &db,
        rcjobs_console::Config {
            token: Some(TOKEN.into()),
            read_only: true,
            ..Default::default()
        },
    )
    .await;
    let r = http
        .post(format!("{shown}/queues/pause"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("scope", "queue"), ("name", "default")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let pauses: i64 = one(&db, "SELECT count(*) FROM rcjobs.pause").await;
    assert_eq!(pauses, 0);
}
