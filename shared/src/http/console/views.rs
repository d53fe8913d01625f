//! The console's pages and forms. Pages read through the store ports; forms call the `/v1`
//! handlers ([`super::bearer`]) and come back to the page with what happened.

use super::session::{self, Checked, Session};
use super::{answered, back, bearer, json_body, page};
use crate::domain::{Lead, LeadId, LeadStatus, Roster};
use crate::http::{AppState, Problem, store_down};
use crate::ports::{LeadQuery, LeadStore, Notifier, Queue};
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What every page shows around its content.
pub(super) struct Chrome {
    pub name: String,
    pub csrf: String,
    pub nav: &'static str,
    pub ok: Option<String>,
    pub error: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct Flash {
    ok: Option<String>,
    error: Option<String>,
}

fn chrome(s: &Session, nav: &'static str, f: Flash) -> Chrome {
    Chrome { name: s.name.clone(), csrf: s.csrf.clone(), nav, ok: f.ok, error: f.error }
}

/// What a person would call the lead: its name, else its email.
fn who(l: &Lead) -> Option<String> {
    l.contact.display_name().or_else(|| l.contact.email.as_ref().map(|e| e.to_string()))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

// ---- login ----

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    error: Option<String>,
}

pub(super) async fn home<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
) -> Response {
    let now = p.clock.now();
    let in_session =
        session::cookie_of(&headers).and_then(|v| session::verify(p.secrets.admin_token.expose(), &v, now)).is_some();
    Redirect::to(if in_session { "/console/live" } else { "/login" }).into_response()
}

pub(super) async fn login_page() -> Response {
    page(StatusCode::OK, LoginPage { error: None })
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
    name: String,
}

pub(super) async fn login<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Form(f): Form<LoginForm>,
) -> Response {
    let name = f.name.trim();
    let token = p.secrets.admin_token.expose();
    if name.is_empty() || name.chars().count() > 64 {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            LoginPage { error: Some("Give your name (up to 64 characters).".into()) },
        );
    }
    if !crate::sources::secret_matches(f.token.trim(), token) {
        return page(StatusCode::UNAUTHORIZED, LoginPage { error: Some("That is not the admin token.".into()) });
    }
    let exp = p.clock.now() + chrono::Duration::hours(session::HOURS);
    let cookie = session::set_cookie(
        &session::issue(token, name, exp),
        p.settings.server.public_url.starts_with("https://"),
        session::HOURS * 3600,
    );
    let mut r = Redirect::to("/console/live").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    tracing::info!("console login");
    r
}

pub(super) async fn logout<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Checked(_, Nothing {}): Checked<Nothing>,
) -> Response {
    let mut r = Redirect::to("/login").into_response();
    let cookie = session::set_cookie("", p.settings.server.public_url.starts_with("https://"), 0);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---- live ----

#[derive(Deserialize, Default, Clone)]
pub(super) struct Filters {
    #[serde(default)]
    pool: String,
    #[serde(default)]
    rep: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    q: String,
    /// Where the page starts (the `next_cursor` of the one before): older leads.
    #[serde(default)]
    cursor: String,
    ok: Option<String>,
    error: Option<String>,
}

impl Filters {
    fn query(&self) -> Result<LeadQuery, String> {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let status = match some(&self.status) {
            Some(s) => Some(LeadStatus::parse(&s).ok_or_else(|| format!("'{s}' is not a lead status"))?),
            None => None,
        };
        Ok(LeadQuery {
            status,
            owner: some(&self.rep),
            source: some(&self.source),
            pool: some(&self.pool),
            q: some(&self.q),
            cursor: some(&self.cursor),
            limit: 50,
            ..LeadQuery::default()
        })
    }

    /// The filters as a query string, for the CSV link and the script's refreshes.
    fn encoded(&self) -> String {
        serde_urlencoded::to_string([
            ("pool", &self.pool),
            ("rep", &self.rep),
            ("source", &self.source),
            ("status", &self.status),
            ("q", &self.q),
            ("cursor", &self.cursor),
        ])
        .unwrap_or_default()
    }
}

/// A lead as a row of the live table.
pub(super) struct Row {
    pub id: String,
    pub received: String,
    pub source: String,
    pub who: String,
    pub company: String,
    pub grade: String,
    pub pool: String,
    pub owner: String,
    pub status: String,
    pub to_assign: String,
}

impl Row {
    fn of(l: &Lead) -> Row {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
        Row {
            id: l.id.to_string(),
            received: ts(l.received_at),
            source: l.source.clone(),
            who: who(l).unwrap_or_else(|| "—".into()),
            company: dash(&l.contact.company),
            grade: dash(&l.grade),
            pool: dash(&l.pool),
            owner: dash(&l.owner),
            status: l.status.as_str().to_owned(),
            to_assign: l
                .first_assigned_at
                .map(|a| format!("{:.1} s", (a - l.received_at).num_milliseconds() as f64 / 1000.0))
                .unwrap_or_else(|| "—".into()),
        }
    }
}

#[derive(Template)]
#[template(path = "console/live.html")]
struct LivePage {
    c: Chrome,
    f: Filters,
    pools: Vec<String>,
    reps: Vec<String>,
    sources: Vec<String>,
    statuses: Vec<&'static str>,
    rows: Vec<Row>,
    query: String,
    /// The query of the next page (older leads), when there is one; a search that stopped
    /// short of a full page to answer quickly has one too.
    older: Option<String>,
}

#[derive(Template)]
#[template(path = "console/rows.html")]
struct Rows {
    rows: Vec<Row>,
}

fn sources_of(settings: &crate::config::Settings) -> Vec<String> {
    let mut v = vec!["web".to_owned()];
    v.extend(settings.sources.webhooks().map(|s| s.name().to_owned()));
    v
}

pub(super) async fn live<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    s: Session,
    Query(f): Query<Filters>,
) -> Result<Response, Problem> {
    let (rows, next, error) = match f.query() {
        Ok(q) => {
            let page = p.store.list(q).await.map_err(store_down)?;
            (page.items.iter().map(Row::of).collect(), page.next_cursor, None)
        }
        Err(e) => (Vec::new(), None, Some(e)),
    };
    let older = next.map(|cursor| Filters { cursor, ..f.clone() }.encoded());
    let roster = p.roster().await.map_err(store_down)?;
    let flash = Flash { ok: f.ok.clone(), error: error.or(f.error.clone()) };
    let query = f.encoded();
    Ok(page(
        StatusCode::OK,
        LivePage {
            c: chrome(&s, "live", flash),
            pools: p.settings.pools.iter().map(|p| p.id.clone()).collect(),
            reps: roster.reps().iter().map(|r| r.id.clone()).collect(),
            sources: sources_of(&p.settings),
            statuses: LeadStatus::ALL.iter().map(|s| s.as_str()).collect(),
            f,
            rows,
            query,
            older,
        },
    ))
}

/// The live table's rows alone, for the script to swap in.
pub(super) async fn rows<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    _s: Session,
    Query(f): Query<Filters>,
) -> Result<Response, Problem> {
    let q = f.query().map_err(|e| Problem::invalid(e, vec![]))?;
    let rows = p.store.list(q).await.map_err(store_down)?.items.iter().map(Row::of).collect();
    Ok(page(StatusCode::OK, Rows { rows }))
}

/// The event stream for the console's script (the session, not the bearer token). 404 where
/// the runtime has none: the script then polls.
pub(super) async fn events<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    _s: Session,
) -> Result<Response, Problem> {
    crate::http::admin::events(State(p.clone()), bearer(&p)).await
}

pub(super) async fn csv<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    _s: Session,
    Query(f): Query<Filters>,
) -> Result<Response, Problem> {
    let q = f.query().map_err(|e| Problem::invalid(e, vec![]))?;
    crate::http::csv::export(&p, q, 100_000).await.map_err(store_down)
}

// ---- a lead ----

pub(super) struct Step {
    pub at: String,
    pub to: String,
    pub reason: String,
    pub by: String,
    pub owner: String,
}

pub(super) struct DeliveryRow {
    pub recipient: String,
    pub kind: String,
    pub target: String,
    pub attempts: u32,
    pub state: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "console/lead.html")]
struct LeadPage {
    c: Chrome,
    id: String,
    title: String,
    facts: Vec<(&'static str, String)>,
    why: String,
    score: String,
    breakdown: Vec<(String, i64)>,
    steps: Vec<Step>,
    touches: Vec<(String, String, String)>,
    deliveries: Vec<DeliveryRow>,
    reps: Vec<String>,
    owner: String,
    closed: bool,
    sales: Vec<&'static str>,
    erased: bool,
}

pub(super) async fn lead<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    s: Session,
    Path(id): Path<String>,
    Query(flash): Query<Flash>,
) -> Result<Response, Problem> {
    let Some(lead_id) = LeadId::parse(&id) else { return Err(Problem::not_found("no such lead")) };
    let Some(l) = p.store.get(&lead_id).await.map_err(store_down)? else {
        return Err(Problem::not_found("no such lead"));
    };
    let deliveries = p.store.deliveries(&lead_id).await.map_err(store_down)?;
    let roster = p.roster().await.map_err(store_down)?;
    let c = &l.contact;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let facts = vec![
        ("Email", c.email.as_ref().map(|e| e.to_string()).unwrap_or_default()),
        ("Phone", c.phone.as_ref().map(|p| p.to_string()).unwrap_or_default()),
        ("Company", text(&c.company)),
        ("Title", text(&c.job_title)),
        ("Country", text(&c.country)),
        ("Source", l.source.clone()),
        ("Status", l.status.as_str().to_owned()),
        ("Pool", text(&l.pool)),
        ("Owner", text(&l.owner)),
        ("Grade", text(&l.grade)),
        ("Touches", l.touch_count.to_string()),
    ];
    let mut facts = facts;
    // The lead's records in the CRMs it was written into.
    for crm in crate::crm::CrmName::ALL {
        if let Some(record) = l.crm.get(crm.as_str()) {
            let label = match crm {
                crate::crm::CrmName::HubSpot => "HubSpot contact",
                crate::crm::CrmName::Salesforce => "Salesforce Lead",
            };
            facts.push((label, record.clone()));
        }
    }
    let page_ = LeadPage {
        c: chrome(&s, "live", flash),
        id: l.id.to_string(),
        title: who(&l).unwrap_or_else(|| "A lead".into()),
        facts: facts.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        why: l.why.clone().unwrap_or_default(),
        score: l.score.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
        breakdown: l.breakdown.iter().map(|r| (r.rule.clone(), r.points)).collect(),
        steps: l
            .history
            .iter()
            .rev()
            .map(|h| Step {
                at: ts(h.at),
                to: h.to.as_str().to_owned(),
                reason: h.reason.clone(),
                by: text(&h.by),
                owner: text(&h.owner),
            })
            .collect(),
        touches: l.touches.iter().map(|t| (ts(t.at), t.source.clone(), t.matched_on.clone())).collect(),
        deliveries: deliveries
            .iter()
            .map(|d| DeliveryRow {
                recipient: d.recipient.clone(),
                kind: d.kind.as_str().to_owned(),
                target: d.target.clone(),
                attempts: d.attempts,
                state: format!("{:?}", d.state()).to_lowercase(),
                error: text(&d.last_error),
            })
            .collect(),
        reps: roster.reps().iter().map(|r| r.id.clone()).collect(),
        owner: text(&l.owner),
        closed: matches!(l.status, LeadStatus::Won | LeadStatus::Lost),
        sales: LeadStatus::SALES.iter().map(|s| s.as_str()).collect(),
        erased: l.personal_data_erased_at.is_some(),
    };
    Ok(page(StatusCode::OK, page_))
}

#[derive(Deserialize)]
pub(super) struct AssignForm {
    rep: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    force: Option<String>,
}

pub(super) async fn assign<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Path(id): Path<String>,
    Checked(s, f): Checked<AssignForm>,
) -> Response {
    let body = json!({"rep": f.rep, "by": s.name, "note": f.note, "force": f.force.is_some()});
    let r = crate::http::manage::post_assign(State(p.clone()), bearer(&p), Path(id.clone()), json_body(body)).await;
    let out = answered(r).await.map(|l| format!("moved to {}", l["owner"].as_str().unwrap_or("?")));
    back(&format!("/console/leads/{id}"), out)
}

#[derive(Deserialize)]
pub(super) struct StatusForm {
    status: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    back: String,
}

/// A manager sets the status for the owner: the owner stays the `by` the API checks, and the
/// note says who did it.
pub(super) async fn status<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Path(id): Path<String>,
    Checked(s, f): Checked<StatusForm>,
) -> Response {
    let owner = match LeadId::parse(&id) {
        Some(lid) => p.store.get(&lid).await.ok().flatten().and_then(|l| l.owner),
        None => None,
    };
    let to = if f.back == "sla" { "/console/sla".to_owned() } else { format!("/console/leads/{id}") };
    let Some(owner) = owner else { return back(&to, Err("the lead has no owner to set a status for".into())) };
    let note = format!(
        "set by {} in the console{}",
        s.name,
        if f.note.trim().is_empty() { String::new() } else { format!(": {}", f.note.trim()) }
    );
    let body = json!({"status": f.status, "by": owner, "note": note});
    let r = crate::http::sales::post_status(State(p.clone()), bearer(&p), Path(id.clone()), json_body(body)).await;
    back(&to, answered(r).await.map(|l| format!("now {}", l["status"].as_str().unwrap_or("?"))))
}

pub(super) async fn erase<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Path(id): Path<String>,
    Checked(_, Nothing {}): Checked<Nothing>,
) -> Response {
    let r = crate::http::privacy::post_erasure(State(p.clone()), bearer(&p), json_body(json!({"lead_id": id}))).await;
    let out = answered(r).await.map(|v| {
        let n = |k: &str| v[k].as_array().map_or(0, Vec::len);
        format!("erased {} leads of this person, {} more once they settle", n("erased"), n("pending"))
    });
    back(&format!("/console/leads/{id}"), out)
}

/// A form with nothing but its token.
#[derive(Deserialize)]
pub(super) struct Nothing {}

// ---- reps ----

pub(super) struct RepRow {
    pub id: String,
    pub name: String,
    pub state: String,
    pub available: bool,
    pub cap: String,
    pub weight: String,
    pub active: bool,
    pub ooo: String,
    pub notify: String,
    pub max_open: String,
    pub shares: Vec<(String, String)>,
    /// The last change made through the console or the API: who, and when.
    pub changed: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/reps.html")]
struct RepsPage {
    c: Chrome,
    reps: Vec<RepRow>,
    days: i64,
}

#[derive(Deserialize)]
pub(super) struct RepsQuery {
    days: Option<i64>,
    /// Compute the metrics now rather than take the last minute's.
    #[serde(default)]
    fresh: Option<String>,
    ok: Option<String>,
    error: Option<String>,
}

pub(super) async fn reps<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    s: Session,
    Query(q): Query<RepsQuery>,
) -> Result<Response, Problem> {
    let days = q.days.unwrap_or(30).clamp(1, 365);
    let roster = p.roster().await.map_err(store_down)?;
    let now = p.clock.now();
    let metrics = cached_metrics(&p, &roster, now - chrono::Duration::days(days), now, q.fresh.is_some()).await?;
    let changes = p.store.reps().await.map_err(store_down)?;
    let mut rows = Vec::new();
    for r in roster.reps() {
        let open = p.store.open_count(&r.id, u32::MAX).await.map_err(store_down)?;
        let availability = r.availability(now, open);
        let rec = roster.record(r);
        let shares = metrics
            .pools
            .iter()
            .filter_map(|pool| {
                let share = pool.reps.iter().find(|x| x.rep == r.id)?;
                Some((
                    pool.pool.clone(),
                    format!(
                        "{:.0}% of {} (weight {}: {:.0}%)",
                        share.share * 100.0,
                        pool.assigned,
                        share.weight,
                        share.expected_share * 100.0
                    ),
                ))
            })
            .collect();
        rows.push(RepRow {
            id: r.id.clone(),
            name: r.name.clone(),
            available: availability.is_ok(),
            state: match availability {
                Ok(()) => "available".into(),
                Err(u) => u.to_string(),
            },
            cap: r.max_open_leads.map(|m| format!("{open}/{m}")).unwrap_or_else(|| open.to_string()),
            weight: rec.weight.map(|w| w.to_string()).unwrap_or_default(),
            active: rec.active,
            ooo: rec.out_of_office.join(", "),
            notify: rec.notify.join(", "),
            max_open: rec.max_open_leads.map(|m| m.to_string()).unwrap_or_default(),
            shares,
            changed: changes
                .iter()
                .find(|c| c.id == r.id)
                .and_then(|c| Some((c.updated_by.clone().unwrap_or_else(|| "the API".into()), ts(c.updated_at?)))),
        });
    }
    let flash = Flash { ok: q.ok, error: q.error };
    Ok(page(StatusCode::OK, RepsPage { c: chrome(&s, "reps", flash), reps: rows, days }))
}

#[derive(Deserialize)]
pub(super) struct RepForm {
    /// For a new rep.
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    out_of_office: String,
    #[serde(default)]
    active: Option<String>,
    #[serde(default)]
    weight: String,
    #[serde(default)]
    max_open_leads: String,
    #[serde(default)]
    notify: String,
}

fn list(s: &str) -> Vec<String> {
    s.split([',', '\n']).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

/// A new rep, named by the form.
pub(super) async fn add_rep<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Checked(s, f): Checked<RepForm>,
) -> Response {
    let id = f.id.trim().to_owned();
    edit_rep(State(p), Path(id), Checked(s, f)).await
}

/// Adds a rep or changes one: the rep's record as it stands, with the form's fields over it.
pub(super) async fn edit_rep<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Path(id): Path<String>,
    Checked(s, f): Checked<RepForm>,
) -> Response {
    let roster = match p.roster().await {
        Ok(r) => r,
        Err(e) => return back("/console/reps", Err(e.to_string())),
    };
    let mut rec = match roster.rep(&id) {
        Some(r) => serde_json::to_value(roster.record(r)).unwrap_or_else(|_| json!({})),
        None => json!({"name": id}),
    };
    for k in ["open_leads", "removed", "updated_at", "updated_by", "id"] {
        if let Some(o) = rec.as_object_mut() {
            o.remove(k);
        }
    }
    let num = |v: &str| v.trim().parse::<u32>().ok();
    if !f.name.trim().is_empty() {
        rec["name"] = json!(f.name.trim());
    }
    rec["out_of_office"] = json!(list(&f.out_of_office));
    rec["active"] = json!(f.active.is_some());
    rec["notify"] = json!(list(&f.notify));
    rec["weight"] = num(&f.weight).map_or(Value::Null, |w| json!(w));
    rec["max_open_leads"] = num(&f.max_open_leads).map_or(Value::Null, |w| json!(w));
    rec["updated_by"] = json!(s.name);
    if let Some(o) = rec.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    let r = crate::http::roster::put_rep(State(p.clone()), bearer(&p), Path(id.clone()), json_body(rec)).await;
    back("/console/reps", answered(r).await.map(|_| format!("{id} saved")))
}

#[derive(Template)]
#[template(path = "console/remove.html")]
struct RemovePage {
    c: Chrome,
    id: String,
    name: String,
    rows: Vec<Row>,
}

pub(super) async fn remove_page<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    s: Session,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let roster = p.roster().await.map_err(store_down)?;
    let Some(rep) = roster.rep(&id) else { return Err(Problem::not_found("no such rep")) };
    let ids = p.store.open_leads(&id).await.map_err(store_down)?;
    let mut rows = Vec::new();
    for lid in ids.iter().take(200) {
        if let Some(l) = p.store.get(lid).await.map_err(store_down)? {
            rows.push(Row::of(&l));
        }
    }
    let name = rep.name.clone();
    Ok(page(StatusCode::OK, RemovePage { c: chrome(&s, "reps", Flash::default()), id, name, rows }))
}

pub(super) async fn remove<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Path(id): Path<String>,
    Checked(s, Nothing {}): Checked<Nothing>,
) -> Response {
    let by = Some(serde_urlencoded::to_string([("by", s.name.as_str())]).unwrap_or_default());
    let r = crate::http::roster::delete_rep(State(p.clone()), bearer(&p), Path(id.clone()), RawQuery(by)).await;
    let out = answered(r).await.map(|v| format!("{id} removed; {} open leads going to others", v["reassigning"]));
    back("/console/reps", out)
}

#[derive(Deserialize)]
pub(super) struct ReassignForm {
    #[serde(default)]
    note: String,
}

pub(super) async fn reassign<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Path(id): Path<String>,
    Checked(s, f): Checked<ReassignForm>,
) -> Response {
    let body = json!({"by": s.name, "note": f.note});
    let r =
        crate::http::manage::post_rep_reassign(State(p.clone()), bearer(&p), Path(id.clone()), json_body(body)).await;
    back(
        "/console/reps",
        answered(r).await.map(|v| format!("{} of {id}'s open leads sent back through routing", v["reassigned"])),
    )
}

// ---- SLA ----

pub(super) struct Waiting {
    pub id: String,
    pub who: String,
    pub owner: String,
    pub pool: String,
    pub due: String,
    pub breached: bool,
}

pub(super) struct Nobody {
    pub id: String,
    pub who: String,
    pub pool: String,
    pub why: String,
}

#[derive(Template)]
#[template(path = "console/sla.html")]
struct SlaPage {
    c: Chrome,
    waiting: Vec<Waiting>,
    unassigned: Vec<Nobody>,
    reps: Vec<String>,
}

/// Every lead in `status`, a page at a time, up to `max`.
async fn all_in<S: LeadStore>(store: &S, status: LeadStatus, max: usize) -> Result<Vec<Lead>, Problem> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let q = LeadQuery { status: Some(status), limit: 500, cursor, ..LeadQuery::default() };
        let page = store.list(q).await.map_err(store_down)?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) if out.len() < max => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

/// How many leads waiting for a stage the SLA page reads at most.
const WAITING_READ: usize = 5_000;

/// Leads waiting for a stage (`LeadStore::pending`, whatever their deadline), oldest first, up
/// to `max`.
async fn waiting_for_a_stage<S: LeadStore>(store: &S, max: usize) -> Result<Vec<Lead>, Problem> {
    let whenever = Utc::now() + chrono::Duration::days(100 * 365);
    let mut out = Vec::new();
    let mut after = None;
    while out.len() < max {
        let page = store.pending(whenever, after, 500).await.map_err(store_down)?;
        let leads = futures::future::join_all(page.leads.iter().map(|id| store.get(id))).await;
        for l in leads {
            out.extend(l.map_err(store_down)?);
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok(out)
}

pub(super) async fn sla<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    s: Session,
    Query(flash): Query<Flash>,
) -> Result<Response, Problem> {
    let mut waiting: Vec<(DateTime<Utc>, Lead)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut keep = |l: Lead, waiting: &mut Vec<(DateTime<Utc>, Lead)>| {
        let due = l.sla_due_at.or(l.sla_breached_at);
        if let Some(d) = due
            && matches!(l.status, LeadStatus::Assigned | LeadStatus::Notified)
            && seen.insert(l.id.clone())
        {
            waiting.push((d, l));
        }
    };
    // Every lead whose SLA clock runs is in the store's index of waiting leads, however long
    // ago it arrived (with those mid-pipeline, which are passed over).
    for l in waiting_for_a_stage(&p.store, WAITING_READ).await? {
        keep(l, &mut waiting);
    }
    // A breached lead nobody else could take has no deadline left: the newest of them.
    for st in [LeadStatus::Assigned, LeadStatus::Notified] {
        for l in all_in(&p.store, st, 2_000).await? {
            keep(l, &mut waiting);
        }
    }
    // Breached first (their deadline passed), then the nearest deadline.
    waiting.sort_by_key(|(d, l)| (l.sla_breached_at.is_none(), *d));
    let who = |l: &Lead| who(l).unwrap_or_else(|| "A lead".into());
    let waiting = waiting
        .iter()
        .map(|(d, l)| Waiting {
            id: l.id.to_string(),
            who: who(l),
            owner: l.owner.clone().unwrap_or_default(),
            pool: l.pool.clone().unwrap_or_default(),
            due: ts(*d),
            breached: l.sla_breached_at.is_some(),
        })
        .collect();
    let unassigned = all_in(&p.store, LeadStatus::Unassigned, 2_000)
        .await?
        .iter()
        .map(|l| Nobody {
            id: l.id.to_string(),
            who: who(l),
            pool: l.pool.clone().unwrap_or_default(),
            why: l
                .history
                .iter()
                .rev()
                .find(|h| h.to == LeadStatus::Unassigned)
                .map(|h| h.reason.clone())
                .unwrap_or_default(),
        })
        .collect();
    let roster = p.roster().await.map_err(store_down)?;
    let reps = roster.reps().iter().map(|r| r.id.clone()).collect();
    Ok(page(StatusCode::OK, SlaPage { c: chrome(&s, "sla", flash), waiting, unassigned, reps }))
}

// ---- funnel ----

/// Metrics are read over every lead in the window, which takes about a second with a million
/// leads stored: each window's are kept, and a page is answered from what is kept. Older than a
/// minute, it is still shown and computed again in the background (one computation per window
/// at a time), so only the very first load of a window after a start waits for it; `serve`
/// computes the 30-day window at start-up ([`warm_metrics`]).
async fn cached_metrics<S: LeadStore, Q: Queue, N: Notifier>(
    p: &AppState<S, Q, N>,
    roster: &Roster,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    fresh: bool,
) -> Result<crate::domain::metrics::Metrics, Problem> {
    let key = metrics_key(p, (to - from).num_days());
    let kept = METRICS.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
    if let Some((at, m)) = kept
        && !fresh
    {
        if at.elapsed() >= METRICS_FOR && REFRESHING.lock().unwrap_or_else(|e| e.into_inner()).insert(key) {
            let (p, roster, days) = (p.clone(), roster.clone(), key.1);
            tokio::spawn(async move {
                let now = p.clock.now();
                let _ = compute_metrics(&p, &roster, now - chrono::Duration::days(days), now).await;
                REFRESHING.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            });
        }
        return Ok(m);
    }
    compute_metrics(p, roster, from, to).await
}

/// The pipeline they were computed for (one per process in `serve` and in a function; tests may
/// run several) and the window's length in days.
type MetricsKey = (usize, i64);
type KeptMetrics = std::collections::HashMap<MetricsKey, (std::time::Instant, crate::domain::metrics::Metrics)>;
static METRICS: std::sync::LazyLock<std::sync::Mutex<KeptMetrics>> = std::sync::LazyLock::new(Default::default);
static REFRESHING: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<MetricsKey>>> =
    std::sync::LazyLock::new(Default::default);
/// How long kept metrics are shown before they are computed again.
const METRICS_FOR: std::time::Duration = std::time::Duration::from_secs(60);

fn metrics_key<S, Q, N>(p: &AppState<S, Q, N>, days: i64) -> MetricsKey {
    (std::sync::Arc::as_ptr(p) as usize, days)
}

async fn compute_metrics<S: LeadStore, Q: Queue, N: Notifier>(
    p: &AppState<S, Q, N>,
    roster: &Roster,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<crate::domain::metrics::Metrics, Problem> {
    let m = crate::http::roster::compute(&p.store, &p.settings, roster, from, to).await.map_err(store_down)?;
    let key = metrics_key(p, (to - from).num_days());
    METRICS.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (std::time::Instant::now(), m.clone()));
    Ok(m)
}

/// Computes the console's default (30-day) metrics in the background, so that the first Reps or
/// Funnel page after a start is answered from them.
pub fn warm_metrics<S: LeadStore, Q: Queue, N: Notifier>(p: AppState<S, Q, N>) {
    tokio::spawn(async move {
        let Ok(roster) = p.roster().await else { return };
        let now = p.clock.now();
        if let Err(e) = compute_metrics(&p, &roster, now - chrono::Duration::days(30), now).await {
            tracing::warn!(error = %e.detail, "console metrics not computed at start-up");
        }
    });
}

pub(super) struct Bar {
    pub label: String,
    pub value: String,
    /// Width in the chart's units (0–100).
    pub width: f64,
    pub y: u32,
}

pub(super) struct Chart {
    pub title: String,
    pub bars: Vec<Bar>,
    pub height: u32,
}

fn chart(title: &str, items: Vec<(String, f64, String)>) -> Chart {
    let max = items.iter().map(|i| i.1).fold(0.0_f64, f64::max);
    let bars: Vec<Bar> = items
        .into_iter()
        .enumerate()
        .map(|(i, (label, v, value))| Bar {
            label,
            value,
            width: if max > 0.0 { (v / max * 100.0).max(0.5) } else { 0.5 },
            y: i as u32 * 22,
        })
        .collect();
    let height = (bars.len() as u32 * 22).max(22);
    Chart { title: title.into(), bars, height }
}

pub(super) struct FunnelRow {
    pub name: String,
    pub leads: u64,
    pub assigned: u64,
    pub accepted: u64,
    pub won: u64,
    pub conversion: String,
    pub cost: String,
    pub assign_p50: String,
    pub assign_p90: String,
    pub accept_p50: String,
    pub accept_p90: String,
}

/// One line of a chart over time.
pub(super) struct Series {
    pub name: String,
    /// `s0`…`s5`: its colour.
    pub class: String,
    /// SVG polyline points, and each as a dot (a single day is a dot, not a line).
    pub points: String,
    pub dots: Vec<(String, String)>,
    /// Its value on the last day.
    pub last: String,
}

/// A chart over the days of the window.
pub(super) struct TimeChart {
    pub title: String,
    pub series: Vec<Series>,
    pub first: String,
    pub last: String,
    pub max: String,
}

const PLOT_W: f64 = 300.0;
const PLOT_H: f64 = 120.0;

/// Lines over `dates`, each a value per date (None: no point that day), scaled to the largest.
fn time_chart(title: &str, dates: &[String], lines: Vec<(String, Vec<Option<f64>>)>, unit: &str) -> TimeChart {
    let max = lines.iter().flat_map(|(_, v)| v.iter().flatten()).copied().fold(0.0_f64, f64::max);
    let step = if dates.len() > 1 { PLOT_W / (dates.len() - 1) as f64 } else { 0.0 };
    let series = lines
        .into_iter()
        .enumerate()
        .map(|(i, (name, values))| {
            let dots: Vec<(String, String)> = values
                .iter()
                .enumerate()
                .filter_map(|(d, v)| {
                    let v = (*v)?;
                    let y = if max > 0.0 { PLOT_H - v / max * PLOT_H } else { PLOT_H };
                    Some((format!("{:.1}", d as f64 * step), format!("{y:.1}")))
                })
                .collect();
            let points = dots.iter().map(|(x, y)| format!("{x},{y}")).collect::<Vec<_>>().join(" ");
            let last = values.last().copied().flatten().map(|v| format!("{v}{unit}")).unwrap_or_else(|| "—".into());
            Series { name, class: format!("s{}", i % 6), points, dots, last }
        })
        .collect();
    TimeChart {
        title: title.into(),
        series,
        first: dates.first().cloned().unwrap_or_default(),
        last: dates.last().cloned().unwrap_or_default(),
        max: format!("{max}{unit}"),
    }
}

#[derive(Template)]
#[template(path = "console/funnel.html")]
struct FunnelPage {
    c: Chrome,
    days: i64,
    computed: String,
    over_time: Vec<TimeChart>,
    sources: Vec<FunnelRow>,
    reps: Vec<FunnelRow>,
    charts: Vec<Chart>,
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "—".into())
}

fn funnel_rows(m: &BTreeMap<String, crate::domain::metrics::Funnel>) -> Vec<FunnelRow> {
    m.iter()
        .map(|(k, f)| FunnelRow {
            name: k.clone(),
            leads: f.leads,
            assigned: f.assigned,
            accepted: f.accepted,
            won: f.won,
            conversion: format!("{:.1}%", f.conversion_rate * 100.0),
            cost: f.cost_per_lead.map(|c| format!("{c:.2}")).unwrap_or_else(|| "—".into()),
            assign_p50: secs(f.time_to_assign_seconds.p50),
            assign_p90: secs(f.time_to_assign_seconds.p90),
            accept_p50: secs(f.time_to_accept_seconds.p50),
            accept_p90: secs(f.time_to_accept_seconds.p90),
        })
        .collect()
}

pub(super) async fn funnel<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    s: Session,
    Query(q): Query<RepsQuery>,
) -> Result<Response, Problem> {
    let days = q.days.unwrap_or(30).clamp(1, 365);
    let roster = p.roster().await.map_err(store_down)?;
    let now = p.clock.now();
    let m = cached_metrics(&p, &roster, now - chrono::Duration::days(days), now, q.fresh.is_some()).await?;
    let by_source = |f: &dyn Fn(&crate::domain::metrics::Funnel) -> (f64, String)| {
        m.sources.iter().map(|(k, v)| (k.clone(), f(v).0, f(v).1)).collect::<Vec<_>>()
    };
    let charts = vec![
        chart("Leads by source", by_source(&|f| (f.leads as f64, f.leads.to_string()))),
        chart(
            "Conversion by source",
            by_source(&|f| (f.conversion_rate, format!("{:.1}%", f.conversion_rate * 100.0))),
        ),
        chart(
            "Cost per lead by source",
            by_source(&|f| {
                (
                    f.cost_per_lead.unwrap_or(0.0),
                    f.cost_per_lead.map(|c| format!("{c:.2}")).unwrap_or_else(|| "—".into()),
                )
            }),
        ),
        chart(
            "Time to assign, p90, by source",
            by_source(&|f| (f.time_to_assign_seconds.p90.unwrap_or(0.0), secs(f.time_to_assign_seconds.p90))),
        ),
        chart(
            "Time to accept, p90, by rep",
            m.reps
                .iter()
                .map(|(k, f)| {
                    (k.clone(), f.time_to_accept_seconds.p90.unwrap_or(0.0), secs(f.time_to_accept_seconds.p90))
                })
                .collect(),
        ),
    ];
    let dates: Vec<String> = m.days.iter().map(|d| d.date.clone()).collect();
    let sources: Vec<String> = m.sources.keys().cloned().collect();
    let per_day = |f: &dyn Fn(&crate::domain::metrics::Day) -> Option<f64>| m.days.iter().map(f).collect::<Vec<_>>();
    let over_time = vec![
        time_chart(
            "Leads per day by source",
            &dates,
            sources
                .iter()
                .map(|src| (src.clone(), per_day(&|d| Some(d.leads.get(src).copied().unwrap_or(0) as f64))))
                .collect(),
            "",
        ),
        time_chart(
            "Time to assign per day (s)",
            &dates,
            vec![
                ("p50".into(), per_day(&|d| d.time_to_assign_seconds.p50)),
                ("p90".into(), per_day(&|d| d.time_to_assign_seconds.p90)),
            ],
            " s",
        ),
        time_chart(
            "Time to accept per day (s)",
            &dates,
            vec![
                ("p50".into(), per_day(&|d| d.time_to_accept_seconds.p50)),
                ("p90".into(), per_day(&|d| d.time_to_accept_seconds.p90)),
            ],
            " s",
        ),
    ];
    let flash = Flash { ok: q.ok, error: q.error };
    Ok(page(
        StatusCode::OK,
        FunnelPage {
            over_time,
            c: chrome(&s, "funnel", flash),
            computed: ts(m.to),
            days,
            sources: funnel_rows(&m.sources),
            reps: funnel_rows(&m.reps),
            charts,
        },
    ))
}

// ---- routing ----

#[derive(Template)]
#[template(path = "console/routing.html")]
struct RoutingPage {
    c: Chrome,
    document: String,
    preview: Option<Value>,
    preview_skipped: Vec<String>,
    replay: Option<String>,
    pasted: String,
    sources: Vec<String>,
}

/// The document with literal secrets masked (a secret read from the environment shows its
/// variable's name).
fn masked(doc: &str) -> String {
    doc.lines()
        .map(|line| {
            let t = line.trim_start();
            let secretish = [
                "admin_token",
                "webhook_secret",
                "accept_secret",
                "app_secret",
                "verify_token",
                "access_token",
                "key",
                "secret",
                "smtp_url",
            ];
            match t.split_once('=') {
                Some((k, v)) if secretish.contains(&k.trim()) && !v.trim().trim_matches('"').starts_with("env:") => {
                    format!("{}= \"(hidden)\"", &line[..line.len() - t.len() + k.len()])
                }
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn routing_page(s: &Session, p_doc: &str, sources: Vec<String>, flash: Flash) -> RoutingPage {
    RoutingPage {
        c: chrome(s, "routing", flash),
        document: masked(p_doc),
        preview: None,
        preview_skipped: Vec::new(),
        replay: None,
        pasted: String::new(),
        sources,
    }
}

pub(super) async fn routing<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    s: Session,
    Query(flash): Query<Flash>,
) -> Response {
    page(StatusCode::OK, routing_page(&s, &p.settings.document, sources_of(&p.settings), flash))
}

pub(super) async fn preview<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Checked(s, mut f): Checked<BTreeMap<String, String>>,
) -> Response {
    f.retain(|_, v| !v.trim().is_empty());
    let body = json_body(serde_json::to_value(&f).unwrap_or_default());
    let r = crate::http::preview::post_preview(State(p.clone()), bearer(&p), body).await;
    let mut view = routing_page(&s, &p.settings.document, sources_of(&p.settings), Flash::default());
    match answered(r).await {
        Ok(v) => {
            view.preview_skipped = v["skipped"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            format!(
                                "{}{}: {}",
                                x["pool"].as_str().unwrap_or(""),
                                x["rep"].as_str().map(|r| format!(" / {r}")).unwrap_or_default(),
                                x["reason"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            view.preview = Some(v);
        }
        Err(e) => view.c.error = Some(e),
    }
    page(StatusCode::OK, view)
}

#[derive(Deserialize)]
pub(super) struct ReplayForm {
    document: String,
}

pub(super) async fn replay<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Checked(s, f): Checked<ReplayForm>,
) -> Response {
    let mut h = bearer(&p);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/toml"));
    let r = crate::http::preview::post_replay(
        State(p.clone()),
        h,
        axum::extract::RawQuery(None),
        axum::body::Body::from(f.document.clone()),
    )
    .await;
    let mut view = routing_page(&s, &p.settings.document, sources_of(&p.settings), Flash::default());
    view.pasted = f.document;
    match answered(r).await {
        Ok(v) => match serde_json::from_value::<crate::replay::ReplayReport>(v) {
            Ok(report) => view.replay = Some(report.render()),
            Err(e) => view.c.error = Some(e.to_string()),
        },
        Err(e) => view.c.error = Some(e),
    }
    page(StatusCode::OK, view)
}
