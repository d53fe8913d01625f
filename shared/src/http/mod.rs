//! The one HTTP Router, served by `leadrouter serve` and by the ingest/admin Lambdas alike.

mod admin;
pub(crate) mod console;
mod csv;
mod ingest;
pub mod limit;
mod manage;
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
use openapi::Route;
pub use problem::Problem;
use std::sync::Arc;
use utoipa::openapi::HttpMethod;
use utoipa_axum::router::OpenApiRouter;

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
    let limit = limit::ClientLimit::new(server.rate_limit_per_minute, server.trusted_proxies.clone());
    let mut router = Router::from(api::<S, Q, N>(limit, admin));
    if admin {
        router = router.merge(console::routes::<S, Q, N>());
    }
    router
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

/// The route table: every path with, for each method, its handler and its OpenAPI operation.
/// `/openapi.json` is this table's document ([`openapi::OPENAPI_JSON`]).
fn api<S: LeadStore, Q: Queue, N: Notifier>(
    limit: Option<Arc<limit::ClientLimit>>,
    admin: bool,
) -> OpenApiRouter<AppState<S, Q, N>> {
    use HttpMethod::{Delete, Get, Post, Put};
    let mut leads = Route::new("/v1/leads").on(Post, ingest::post_lead::<S, Q, N>, ingest::post_lead_op());
    if let Some(l) = limit {
        leads = leads.map(|r| r.route_layer(axum::middleware::from_fn_with_state(l, limit::limit)));
    }
    let mut api = OpenApiRouter::with_openapi(openapi::base())
        .routes(
            Route::new("/v1/webhooks/meta")
                .on(Get, webhooks::meta_verify::<S, Q, N>, webhooks::meta_verify_op())
                .on(Post, webhooks::meta_notify::<S, Q, N>, webhooks::meta_notify_op())
                .into(),
        )
        .routes(Route::new("/v1/webhooks/google").on(Post, webhooks::google::<S, Q, N>, webhooks::google_op()).into())
        .routes(
            Route::new("/v1/webhooks/hubspot").on(Post, webhooks::hubspot::<S, Q, N>, webhooks::hubspot_op()).into(),
        )
        .routes(
            Route::new("/v1/webhooks/generic/{source}")
                .on(Post, webhooks::generic::<S, Q, N>, webhooks::generic_op())
                .into(),
        );
    if !admin {
        return api.routes(leads.into());
    }
    api = api
        .routes(leads.on(Get, admin::list_leads::<S, Q, N>, admin::list_leads_op()).into())
        .routes(Route::new("/v1/leads/{id}").on(Get, admin::get_lead::<S, Q, N>, admin::get_lead_op()).into())
        .routes(
            Route::new("/v1/leads/{id}/status").on(Post, sales::post_status::<S, Q, N>, sales::post_status_op()).into(),
        )
        .routes(
            Route::new("/v1/leads/{id}/assign").on(Post, manage::post_assign::<S, Q, N>, manage::assign_op()).into(),
        )
        .routes(
            Route::new("/v1/leads/{id}/accept")
                .on(Get, sales::accept_page::<S, Q, N>, sales::accept_page_op())
                .on(Post, sales::accept::<S, Q, N>, sales::accept_op())
                .into(),
        )
        .routes(Route::new("/v1/reps").on(Get, roster::list_reps::<S, Q, N>, roster::list_reps_op()).into())
        .routes(
            Route::new("/v1/reps/{id}")
                .on(Get, roster::get_rep::<S, Q, N>, roster::get_rep_op())
                .on(Put, roster::put_rep::<S, Q, N>, roster::put_rep_op())
                .on(Delete, roster::delete_rep::<S, Q, N>, roster::delete_rep_op())
                .into(),
        )
        .routes(
            Route::new("/v1/reps/{id}/reassign")
                .on(Post, manage::post_rep_reassign::<S, Q, N>, manage::rep_reassign_op())
                .into(),
        )
        .routes(Route::new("/v1/metrics").on(Get, roster::metrics::<S, Q, N>, roster::metrics_op()).into())
        .routes(Route::new("/v1/erasures").on(Post, privacy::post_erasure::<S, Q, N>, privacy::erasure_op()).into())
        .routes(
            Route::new("/v1/route/preview").on(Post, preview::post_preview::<S, Q, N>, preview::preview_op()).into(),
        )
        .routes(Route::new("/v1/routing/replay").on(Post, preview::post_replay::<S, Q, N>, preview::replay_op()).into())
        .routes(Route::new("/v1/events").on(Get, admin::events::<S, Q, N>, admin::events_op()).into())
        .routes(Route::new("/healthz").on(Get, admin::healthz::<S, Q, N>, admin::healthz_op()).into())
        .routes(Route::new("/openapi.json").on(Get, openapi::serve, openapi::openapi_op()).into());
    api
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

/// An admin route's JSON body: the bearer token checked (401), the body read within the limit
/// (413), then parsed (400).
pub(crate) async fn admin_json<T: serde::de::DeserializeOwned, S: LeadStore, Q: Queue, N: Notifier>(
    p: &AppState<S, Q, N>,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, Problem> {
    authorize(headers, p.secrets.admin_token.expose())?;
    let bytes = read_body(headers, body, p.settings.server.max_body_bytes).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not the JSON this route takes: {e}")))
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
