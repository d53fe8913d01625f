//! `GET /v1/leads` with `Accept: text/csv`: the leads a filter matches as a spreadsheet,
//! streamed a page at a time. Lead-supplied text is data in a spreadsheet too: a cell that
//! would start a formula is prefixed with `'` (OWASP, CSV injection).

use super::AppState;
use crate::domain::Lead;
use crate::ports::{LeadQuery, LeadStore, Notifier, Queue, StoreError};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

const COLUMNS: [&str; 17] = [
    "id",
    "received_at",
    "updated_at",
    "source",
    "status",
    "grade",
    "score",
    "pool",
    "owner",
    "email",
    "phone",
    "name",
    "company",
    "job_title",
    "country",
    "utm_campaign",
    "why",
];

/// Whether the client asked for CSV rather than JSON.
pub(super) fn wanted(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.split(',').any(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv")))
}

/// A cell as a spreadsheet should show it: never a formula.
fn cell(v: &str) -> String {
    match v.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{v}"),
        _ => v.to_owned(),
    }
}

fn row(l: &Lead) -> Vec<String> {
    let c = &l.contact;
    let name = c.display_name().unwrap_or_default();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        l.id.to_string(),
        l.received_at.to_rfc3339(),
        l.last_activity().to_rfc3339(),
        l.source.clone(),
        l.status.as_str().to_owned(),
        text(&l.grade),
        l.score.map(|s| s.to_string()).unwrap_or_default(),
        text(&l.pool),
        text(&l.owner),
        c.email.as_ref().map(|e| e.to_string()).unwrap_or_default(),
        c.phone.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        name,
        text(&c.company),
        text(&c.job_title),
        text(&c.country),
        text(&c.utm_campaign),
        text(&l.why),
    ]
    .iter()
    .map(|v| cell(v))
    .collect()
}

fn encode(rows: impl IntoIterator<Item = Vec<String>>) -> Result<Bytes, StoreError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.write_record(&r).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    }
    w.into_inner().map(Bytes::from).map_err(|e| StoreError::Unavailable(e.into_error().into()))
}

/// Every lead `query` matches from its cursor on, newest first, up to `max` rows. The first
/// page is read before answering, so a store that does not answer is a 503, not a cut file.
pub(super) async fn export<S: LeadStore, Q: Queue, N: Notifier>(
    p: &AppState<S, Q, N>,
    mut query: LeadQuery,
    max: usize,
) -> Result<Response, StoreError> {
    query.limit = 500;
    let first = p.store.list(query.clone()).await?;
    let head = encode(std::iter::once(COLUMNS.iter().map(|c| c.to_string()).collect()))?;
    let sent = first.items.len();
    let body = encode(first.items.iter().map(row))?;
    let p = p.clone();
    let rest = futures::stream::unfold((first.next_cursor, sent), move |(cursor, sent)| {
        let (p, mut query) = (p.clone(), query.clone());
        async move {
            let c = cursor.filter(|_| sent < max)?;
            query.cursor = Some(c);
            match p.store.list(query).await {
                Ok(page) => {
                    let sent = sent + page.items.len();
                    Some((encode(page.items.iter().map(row)), (page.next_cursor, sent)))
                }
                Err(e) => {
                    // The file is cut short; the client sees the body end in error.
                    tracing::error!(error = %e, "CSV export: the store failed mid-way");
                    Some((Err(e), (None, sent)))
                }
            }
        }
    });
    let stream = futures::stream::iter([Ok::<Bytes, StoreError>(head), Ok(body)]).chain(rest);
    let mut r = Body::from_stream(stream).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    r.headers_mut().insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"leads.csv\""));
    Ok(r)
}
