//! The one HTTP Router, served by `leadrouter serve` and by the ingest/admin Lambdas alike.

mod admin;
mod ingest;
pub mod limit;
pub mod openapi;
mod preview;
mod privacy;
pub mod problem;
pub mod roster;
mod sales;
mod webhooks;

use crate::pipeline::Pipeline;
use crate::ports::{LeadStore, Notifier, Queue};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
pub use problem::Problem;
use std::sync::Arc;

pub type AppState<S, Q, N> = Arc<Pipeline<S, Q, N>>;

/// Every route: `leadrouter serve` and the admin function.
pub fn router<S: LeadStore, Q: Queue, N: Notifier>(state: AppState<S, Q, N>) -> Router {
    routes(state, true)
}

/// The public routes only (web forms and webhooks): the ingest function, which is also
/// reachable through its own function URL, serves these and nothing that needs the admin's
/// table access. The same handlers as [`router`]'s.
pub fn public_router<S: LeadStore, Q: Queue, N: Notifier>(state: AppState<S, Q, N>) -> Router {
    routes(state, false)
}

fn routes<S: LeadStore, Q: Queue, N: Notifier>(state: AppState<S, Q, N>, admin: bool) -> Router {
    let server = &state.settings.server;
    let mut leads = post(ingest::post_lead::<S, Q, N>);
    if let Some(l) = limit::ClientLimit::new(server.rate_limit_per_minute, server.trusted_proxies.clone()) {
        leads = leads.route_layer(axum::middleware::from_fn_with_state(l, limit::limit));
    }
    let public = Router::new()
        .route("/v1/webhooks/meta", get(webhooks::meta_verify::<S, Q, N>).post(webhooks::meta_notify::<S, Q, N>))
        .route("/v1/webhooks/google", post(webhooks::google::<S, Q, N>))
        .route("/v1/webhooks/generic/{source}", post(webhooks::generic::<S, Q, N>));
    let routes = if !admin {
        public.route("/v1/leads", leads)
    } else {
        public
            .route("/v1/leads", leads.get(admin::list_leads::<S, Q, N>))
            .route("/v1/leads/{id}", get(admin::get_lead::<S, Q, N>))
            .route("/v1/leads/{id}/status", post(sales::post_status::<S, Q, N>))
            .route("/v1/leads/{id}/accept", get(sales::accept_page::<S, Q, N>).post(sales::accept::<S, Q, N>))
            .route("/v1/reps", get(roster::list_reps::<S, Q, N>))
            .route(
                "/v1/reps/{id}",
                get(roster::get_rep::<S, Q, N>).put(roster::put_rep::<S, Q, N>).delete(roster::delete_rep::<S, Q, N>),
            )
            .route("/v1/metrics", get(roster::metrics::<S, Q, N>))
            .route("/v1/erasures", post(privacy::post_erasure::<S, Q, N>))
            .route("/v1/route/preview", post(preview::post_preview::<S, Q, N>))
            .route("/v1/routing/replay", post(preview::post_replay::<S, Q, N>))
            .route("/healthz", get(admin::healthz::<S, Q, N>))
            .route("/openapi.json", get(openapi::serve))
    };
    routes
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not take that method",
            )
        })
        .with_state(state)
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<axum::body::Bytes, Problem> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Problem::too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return Problem::too_large(limit);
            }
            source = s.source();
        }
        Problem::bad_request("the body could not be read")
    })
}

/// A store that did not answer: logged, and a 503 for the client.
pub(crate) fn store_down(e: crate::ports::StoreError) -> Problem {
    tracing::error!(error = %e, "store failed");
    Problem::unavailable("the store did not answer; try again")
}

/// Checks `Authorization: Bearer <token>` in constant time.
pub(crate) fn authorize(headers: &HeaderMap, token: &str) -> Result<(), Problem> {
    use subtle::ConstantTimeEq;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match given {
        Some(g) if !token.is_empty() && bool::from(g.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Some(_) => Err(Problem::unauthorized("the bearer token is not the admin token")),
        None => Err(Problem::unauthorized("this route needs Authorization: Bearer <admin token>")),
    }
}
