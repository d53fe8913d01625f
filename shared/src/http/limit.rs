//! The per-client rate limit on `POST /v1/leads` (`[server] rate_limit_per_minute`), with
//! `governor`'s keyed GCRA limiter. The client is the peer address, or behind
//! `[server] trusted_proxies` the first untrusted hop of `X-Forwarded-For`, or on AWS the
//! request's `sourceIp`. On Lambda each instance keeps its own counts, so the limit there is
//! approximate; reserved concurrency on the ingest function is the hard cap.

use super::Problem;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct ClientLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    trusted: Vec<ipnet::IpNet>,
    per_minute: u32,
    checks: AtomicU64,
}

/// Clients are forgotten once their bucket is full again; this often the map is pruned.
const PRUNE_EVERY: u64 = 4096;

impl ClientLimit {
    /// None when the limit is off (0).
    pub fn new(per_minute: u32, trusted: Vec<ipnet::IpNet>) -> Option<Arc<ClientLimit>> {
        let n = NonZeroU32::new(per_minute)?;
        Some(Arc::new(ClientLimit {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            trusted,
            per_minute,
            checks: AtomicU64::new(0),
        }))
    }

    fn client(&self, req: &Request) -> IpAddr {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .or_else(|| lambda_source_ip(req))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        crate::domain::net::client_ip(peer, forwarded, &self.trusted)
    }
}

/// The caller's address as API Gateway or a function URL saw it.
fn lambda_source_ip(req: &Request) -> Option<IpAddr> {
    use lambda_http::request::RequestContext;
    let ip = match req.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(c) => c.http.source_ip.clone(),
        RequestContext::ApiGatewayV1(c) => c.identity.source_ip.clone(),
        _ => None,
    }?;
    ip.parse().ok()
}

pub async fn limit(State(limit): State<Arc<ClientLimit>>, req: Request, next: Next) -> Response {
    let client = limit.client(&req);
    if limit.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
        limit.limiter.retain_recent();
    }
    match limit.limiter.check_key(&client) {
        Ok(()) => next.run(req).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            tracing::info!(retry_after_s = secs, "rate limited a client on POST /v1/leads");
            let mut res = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!(
                    "this client sent more than {} leads a minute; nothing was stored, retry in {secs} s",
                    limit.per_minute
                ),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
    }
}
