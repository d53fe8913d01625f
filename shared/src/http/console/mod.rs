//! The manager console (`GET /`): server-rendered pages (askama, escaped at compile time) over
//! the same store ports and admin handlers as the API. Every action a page offers calls the
//! `/v1` handler that does it, with the admin token, so the console is no second path to the
//! data. A session cookie names the manager (`by` on what they do); every form carries the
//! session's CSRF token; the pages load one script and one stylesheet from the binary, and the
//! Content-Security-Policy allows nothing inline.

mod session;
mod views;

pub use views::warm_metrics;

use super::{AppState, Problem};
use crate::ports::{LeadStore, Notifier, Queue};
use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes: HTML for a browser, so they are not in `/openapi.json` (each action is
/// the `/v1` route it calls).
pub(super) fn routes<S: LeadStore, Q: Queue, N: Notifier>() -> Router<AppState<S, Q, N>> {
    Router::new()
        .route("/", get(views::home::<S, Q, N>))
        .route("/login", get(views::login_page).post(views::login::<S, Q, N>))
        .route("/logout", post(views::logout::<S, Q, N>))
        .route("/console/live", get(views::live::<S, Q, N>))
        .route("/console/rows", get(views::rows::<S, Q, N>))
        .route("/console/events", get(views::events::<S, Q, N>))
        .route("/console/leads.csv", get(views::csv::<S, Q, N>))
        .route("/console/leads/{id}", get(views::lead::<S, Q, N>))
        .route("/console/leads/{id}/assign", post(views::assign::<S, Q, N>))
        .route("/console/leads/{id}/status", post(views::status::<S, Q, N>))
        .route("/console/leads/{id}/erase", post(views::erase::<S, Q, N>))
        .route("/console/reps", get(views::reps::<S, Q, N>).post(views::add_rep::<S, Q, N>))
        .route("/console/reps/{id}", post(views::edit_rep::<S, Q, N>))
        .route("/console/reps/{id}/remove", get(views::remove_page::<S, Q, N>).post(views::remove::<S, Q, N>))
        .route("/console/reps/{id}/reassign", post(views::reassign::<S, Q, N>))
        .route("/console/sla", get(views::sla::<S, Q, N>))
        .route("/console/funnel", get(views::funnel::<S, Q, N>))
        .route("/console/routing", get(views::routing::<S, Q, N>))
        .route("/console/routing/preview", post(views::preview::<S, Q, N>))
        .route("/console/routing/replay", post(views::replay::<S, Q, N>))
        .route("/console/assets/{file}", get(asset))
}

/// A rendered page with the console's headers.
fn page(status: StatusCode, t: impl Template) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            secure_headers(r.headers_mut());
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            Problem::unavailable("the page could not be rendered").into_response()
        }
    }
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// After a form: back to `to`, with what happened for the page to say.
fn back(to: &str, outcome: Result<String, String>) -> Response {
    let (k, v) = match outcome {
        Ok(m) => ("ok", m),
        Err(m) => ("error", m),
    };
    let sep = if to.contains('?') { '&' } else { '?' };
    let q = serde_urlencoded::to_string([(k, v)]).unwrap_or_default();
    Redirect::to(&format!("{to}{sep}{q}")).into_response()
}

/// The admin token as a `/v1` handler expects it.
fn bearer<S: LeadStore, Q: Queue, N: Notifier>(p: &AppState<S, Q, N>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", p.secrets.admin_token.expose())) {
        h.insert(header::AUTHORIZATION, v);
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h
}

/// What a `/v1` handler answered: its JSON, or its problem's detail (each bad field named).
async fn answered(r: Result<Response, Problem>) -> Result<serde_json::Value, String> {
    match r {
        Ok(resp) => {
            let ok = resp.status().is_success();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            if ok { Ok(v) } else { Err(v["detail"].as_str().unwrap_or("refused").to_owned()) }
        }
        Err(p) => {
            let fields: Vec<String> = p.errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect();
            Err(if fields.is_empty() { p.detail } else { format!("{} ({})", p.detail, fields.join("; ")) })
        }
    }
}

fn json_body(v: serde_json::Value) -> Body {
    Body::from(v.to_string())
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, ctype): (&'static str, &'static str) = match file.as_str() {
        "console.js" => (include_str!("../../../assets/console.js"), "text/javascript; charset=utf-8"),
        "console.css" => (include_str!("../../../assets/console.css"), "text/css; charset=utf-8"),
        _ => return Problem::not_found("no such asset").into_response(),
    };
    let mut r = ([(header::CONTENT_TYPE, ctype)], body).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}
