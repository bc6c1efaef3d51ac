//! Page layout, escaping, the embedded assets and the error page.

use crate::auth::{csrf_cookie, Ctx};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/console.js");

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A full page: the navigation, who is signed in, and `body`.
pub(crate) fn page(ctx: &Ctx, title: &str, active: &str, body: &str) -> Response {
    let nav: String = [
        ("/", "Overview"),
        ("/jobs", "Jobs"),
        ("/rooms", "Rooms"),
        ("/queues", "Queues"),
    ]
    .iter()
    .map(|(href, name)| {
        let on = if *name == active { " class=\"on\"" } else { "" };
        format!("<a href=\"{href}\"{on}>{name}</a>")
    })
    .collect();
    let who = match (&ctx.who, ctx.why_read_only) {
        (Some(w), _) => format!(
            "signed in as <b id=\"who\">{}</b> <form class=\"inline\" method=\"post\" action=\"/logout\">{}<button class=\"quiet\">sign out</button></form>",
            esc(w),
            csrf_field(ctx)
        ),
        (None, Some(why)) if ctx.can_sign_in => {
            format!("<span id=\"who\">{why}</span> · <a href=\"/login\">sign in</a>")
        }
        (None, why) => format!("<span id=\"who\">{}</span>", why.unwrap_or("read-only")),
    };
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · rcjobs</title><link rel="stylesheet" href="/assets/style.css"></head>
<body><header><span class="brand">rcjobs</span>{nav}<span class="who">{who}</span></header>
<main>{body}</main><script src="/assets/console.js"></script></body></html>"#,
        title = esc(title)
    );
    let mut r = Html(html).into_response();
    if ctx.set_csrf {
        if let Ok(v) = HeaderValue::from_str(&csrf_cookie(&ctx.csrf)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    // nothing of the console may be framed (clickjacking of the action buttons)
    r.headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    r
}

/// The hidden CSRF input every action form carries.
pub(crate) fn csrf_field(ctx: &Ctx) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&ctx.csrf)
    )
}

pub(crate) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// An error shown as a small page with its status.
#[derive(Debug)]
pub(crate) struct AppError {
    status: StatusCode,
    message: String,
}

impl AppError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
        }
    }
}

impl From<rcjobs_queue::QueueError> for AppError {
    fn from(e: rcjobs_queue::QueueError) -> Self {
        use rcjobs_queue::QueueError as Q;
        let status = match &e {
            Q::NotFound(_) => StatusCode::NOT_FOUND,
            Q::Conflict(_) | Q::Rejected(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AppError::new(status, e.to_string())
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::from(rcjobs_queue::QueueError::from(e))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(error = %self.message, "console request failed");
        }
        let body = format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{s} · rcjobs</title>
<link rel="stylesheet" href="/assets/style.css"></head><body><main><div class="error" id="error">{m}</div>
<p><a href="/">overview</a> · <a href="/jobs">jobs</a></p></main></body></html>"#,
            s = self.status.as_u16(),
            m = esc(&self.message)
        );
        (self.status, Html(body)).into_response()
    }
}
