//! Shared test support: a simulator with seeded users and a plain reqwest client.
#![allow(dead_code, clippy::unwrap_used)]

pub mod spec;

use rcjobs_sim::{spawn, Seed, SeedBot, SeedUser, SimConfig, SimHandle};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

/// Installs the ring provider once (reqwest is built with `rustls-no-provider`).
pub fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// `errorType` (or "").
    pub fn error_type(&self) -> &str {
        self.body["errorType"].as_str().unwrap_or("")
    }

    /// `error` text (or "").
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// Asserts a 400 Meteor error of this type and returns self.
    #[track_caller]
    pub fn expect_error(&self, error_type: &str) -> &Self {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{:?}", self.body);
        assert_eq!(self.error_type(), error_type, "{:?}", self.body);
        assert_eq!(self.body["success"], json!(false));
        assert!(
            self.error().ends_with(&format!("[{error_type}]")),
            "{:?}",
            self.body
        );
        self
    }

    /// Asserts 200 with `success: true` and returns the body.
    #[track_caller]
    pub fn expect_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{:?}", self.body);
        assert_eq!(self.body["success"], json!(true), "{:?}", self.body);
        &self.body
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Credentials for one account.
#[derive(Clone, Debug)]
pub struct Creds {
    pub user_id: String,
    pub token: String,
}

/// A running simulator plus a client.
pub struct Sim {
    pub handle: SimHandle,
    pub http: Client,
    pub bot: Creds,
}

/// Standard seed: the bot (`rcjobs.bot`, roles as given), an admin `boss` (password `boss-pw`),
/// and users `alice`, `bob`, `carol`, `dave` (passwords `<name>-pw`).
pub fn seed(bot_roles: &[&str]) -> Seed {
    let mut users = vec![SeedUser {
        username: "boss".into(),
        name: "The Admin".into(),
        email: "boss@example.test".into(),
        active: true,
        roles: vec!["admin".into()],
        password: Some("boss-pw".into()),
    }];
    for n in ["alice", "bob", "carol", "dave"] {
        let mut u = SeedUser::new(n);
        u.password = Some(format!("{n}-pw"));
        users.push(u);
    }
    Seed {
        bot: SeedBot {
            roles: bot_roles.iter().map(|s| s.to_string()).collect(),
            ..SeedBot::default()
        },
        users,
    }
}

impl Sim {
    pub async fn start() -> Sim {
        Self::with(SimConfig {
            seed: seed(&["bot"]),
            ..SimConfig::default()
        })
        .await
    }

    pub async fn with(config: SimConfig) -> Sim {
        let handle = spawn(config).await.unwrap();
        let bot = Creds {
            user_id: handle.bot_user_id().to_string(),
            token: handle.bot_token().to_string(),
        };
        Sim {
            handle,
            http: client(),
            bot,
        }
    }

    pub fn url(&self, endpoint: &str) -> String {
        format!("{}/api/v1/{endpoint}", self.handle.base_url())
    }

    /// A raw call with optional credentials.
    pub async fn raw(
        &self,
        method: Method,
        endpoint: &str,
        who: Option<&Creds>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method.clone(), self.url(endpoint));
        if let Some(c) = who {
            req = req
                .header("X-User-Id", &c.user_id)
                .header("X-Auth-Token", &c.token);
        }
        if let Some(b) = body {
            if method == Method::GET {
                let pairs: Vec<(String, String)> = b
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect();
                req = req.query(&pairs);
            } else {
                req = req.json(&b);
            }
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, who: &Creds, endpoint: &str, query: Value) -> Resp {
        self.raw(Method::GET, endpoint, Some(who), Some(query))
            .await
    }

    pub async fn post(&self, who: &Creds, endpoint: &str, body: Value) -> Resp {
        self.raw(Method::POST, endpoint, Some(who), Some(body))
            .await
    }

    /// Logs in with a password and returns the credentials.
    pub async fn login(&self, user: &str, password: &str) -> Creds {
        let r = self
            .raw(
                Method::POST,
                "login",
                None,
                Some(json!({ "user": user, "password": password })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        Creds {
            user_id: r.body["data"]["userId"].as_str().unwrap().to_string(),
            token: r.body["data"]["authToken"].as_str().unwrap().to_string(),
        }
    }

    /// The id of a username (from the inspection snapshot).
    pub fn uid(&self, username: &str) -> String {
        self.handle.snapshot().user(username).unwrap().id.clone()
    }

    /// Creates a group as the bot with the given members and returns its id.
    pub async fn group(&self, name: &str, members: &[&str]) -> String {
        let r = self
            .post(
                &self.bot,
                "groups.create",
                json!({ "name": name, "members": members }),
            )
            .await;
        r.expect_ok()["group"]["_id"].as_str().unwrap().to_string()
    }
}
