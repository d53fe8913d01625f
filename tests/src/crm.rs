//! Local servers playing HubSpot's CRM v3 API and Salesforce's REST API, written from their
//! published references (the facts and their sources are in `../shared/CRM.md`; each
//! behaviour below names its source). They keep what they are sent, answer as the vendor
//! documents, and record every request for the tests to assert on.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request a fake CRM got.
#[derive(Debug, Clone)]
pub struct CrmRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub at: std::time::Instant,
}

impl CrmRequest {
    fn new(method: &str, path: &str, query: &str, headers: &HeaderMap, body: &Value) -> CrmRequest {
        CrmRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: headers.clone(),
            body: body.clone(),
            at: std::time::Instant::now(),
        }
    }
}

/// A scripted failure for the next calls of one kind.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub retry_after: Option<u64>,
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn listen(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake CRM");
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

// ---------------------------------------------------------------------------------------------
// HubSpot
// ---------------------------------------------------------------------------------------------

/// Contact properties the fake portal has: HubSpot's defaults we write, and the custom
/// `leadrouter_*` properties the README says to create (`leadrouter_lead_id` unique).
/// Writing any other property fails as HubSpot does: 400 VALIDATION_ERROR, PROPERTY_DOESNT_EXIST.
const HS_PROPERTIES: [&str; 19] = [
    "email",
    "firstname",
    "lastname",
    "phone",
    "company",
    "jobtitle",
    "website",
    "country",
    "state",
    "city",
    "hubspot_owner_id",
    "lifecyclestage",
    "hs_lead_status",
    "message",
    "leadrouter_lead_id",
    "leadrouter_source",
    "leadrouter_why",
    "leadrouter_grade",
    "leadrouter_score",
];

#[derive(Default)]
pub struct HubSpotState {
    pub token: String,
    pub requests: Vec<CrmRequest>,
    /// Contact id → properties.
    pub contacts: BTreeMap<String, BTreeMap<String, String>>,
    /// (owner id, email).
    pub owners: Vec<(String, String)>,
    /// (company id, domain, name, owner id, hs_lastmodifieddate).
    pub companies: Vec<(String, String, String, String, String)>,
    /// Answers forced on the next batch upserts.
    pub upsert_script: VecDeque<Scripted>,
    /// Makes company searches slow (stickiness's time budget).
    pub search_delay_ms: u64,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeHubSpot {
    pub url: String,
    pub state: Arc<Mutex<HubSpotState>>,
}

/// HubSpot's error body: `status`, `message`, `correlationId`, `category` (HubSpot-public-api-
/// spec-collection, Error schema; developers.hubspot.com/docs/api-reference/error-handling).
fn hs_error(status: StatusCode, category: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "message": message, "correlationId": "6f1c2a8e-0000-4000-8000-000000000000", "category": category})),
    )
        .into_response()
}

async fn hs_record(
    state: &Arc<Mutex<HubSpotState>>,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Value,
) -> Option<Response> {
    let mut s = state.lock().unwrap();
    s.requests.push(CrmRequest::new(method, path, query, headers, body));
    // Private apps send `Authorization: Bearer <token>` (…/legacy-apps/authentication/intro-to-auth).
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("Bearer {}", s.token) {
        return Some(hs_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.",
        ));
    }
    None
}

async fn hs_upsert(State(state): State<Arc<Mutex<HubSpotState>>>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Some(r) = hs_record(&state, "POST", "/crm/v3/objects/contacts/batch/upsert", "", &headers, &body).await {
        return r;
    }
    let mut s = state.lock().unwrap();
    if let Some(x) = s.upsert_script.pop_front() {
        // 429: `{"status":"error","message":…,"errorType":"RATE_LIMIT","policyName":…}`, with
        // Retry-After where present (community thread quoting …/docs/api/usage-details).
        let mut r = (
            StatusCode::from_u16(x.status).unwrap(),
            axum::Json(json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT", "correlationId": "6f1c2a8e-0000-4000-8000-000000000001", "policyName": "TEN_SECONDLY_ROLLING"})),
        )
            .into_response();
        if let Some(after) = x.retry_after {
            r.headers_mut().insert("retry-after", after.to_string().parse().unwrap());
        }
        return r;
    }
    let Some(inputs) = body["inputs"].as_array() else {
        return hs_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Invalid input JSON: inputs is required");
    };
    // At most 100 inputs (hubspot-api-nodejs#412 quoting the docs' limits).
    if inputs.len() > 100 {
        return hs_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Batch input limit is 100");
    }
    let owners: Vec<String> = s.owners.iter().map(|o| o.0.clone()).collect();
    let mut results = Vec::new();
    for input in inputs {
        // `id` and `properties` are required; property values are strings (Contacts v3 spec).
        let (Some(id_property), Some(id), Some(props)) =
            (input["idProperty"].as_str(), input["id"].as_str(), input["properties"].as_object())
        else {
            return hs_error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "Invalid input: idProperty, id and properties are required",
            );
        };
        if id_property != "email" && id_property != "leadrouter_lead_id" {
            return hs_error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                &format!("{id_property} is not a unique identifier property"),
            );
        }
        for (k, v) in props {
            if !HS_PROPERTIES.contains(&k.as_str()) {
                return hs_error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    &format!("Property values were not valid: Property \"{k}\" does not exist (PROPERTY_DOESNT_EXIST)"),
                );
            }
            if !v.is_string() {
                return hs_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &format!("{k} must be a string"));
            }
        }
        // The owner must be an owner's `id`; a user id "will result in an error" (owners guide).
        if let Some(o) = props.get("hubspot_owner_id").and_then(Value::as_str)
            && !owners.iter().any(|x| x == o)
        {
            return hs_error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                &format!("Property values were not valid: {o} is not a valid owner id (INVALID_OWNER_ID)"),
            );
        }
        let key = id.to_lowercase();
        let existing = s
            .contacts
            .iter()
            .find(|(_, p)| p.get(id_property).map(|v| v.to_lowercase()) == Some(key.clone()))
            .map(|(k, _)| k.clone());
        let (cid, new) = match existing {
            Some(c) => (c, false),
            None => {
                s.next_id += 1;
                (format!("{}", 1000 + s.next_id), true)
            }
        };
        let contact = s.contacts.entry(cid.clone()).or_default();
        contact.insert(id_property.to_owned(), id.to_owned());
        for (k, v) in props {
            contact.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
        }
        contact.insert("hs_object_id".into(), cid.clone());
        results.push(json!({"id": cid, "properties": contact.clone(), "createdAt": now_iso(), "updatedAt": now_iso(), "archived": false, "new": new}));
    }
    // 200: status, results, startedAt, completedAt (Contacts v3 spec, BatchResponseSimplePublicUpsertObject).
    axum::Json(json!({"status": "COMPLETE", "results": results, "startedAt": now_iso(), "completedAt": now_iso()}))
        .into_response()
}

async fn hs_owners(
    State(state): State<Arc<Mutex<HubSpotState>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let query = serde_urlencoded::to_string(&q).unwrap_or_default();
    if let Some(r) = hs_record(&state, "GET", "/crm/v3/owners", &query, &headers, &Value::Null).await {
        return r;
    }
    let s = state.lock().unwrap();
    // Owners: id (string), email, firstName, lastName, userId, type, archived… (crmOwners v3 spec).
    let results: Vec<Value> = s
        .owners
        .iter()
        .filter(|(_, e)| q.get("email").is_none_or(|want| want.eq_ignore_ascii_case(e)))
        .map(|(id, e)| json!({"id": id, "email": e, "firstName": "", "lastName": "", "userId": 9000, "type": "PERSON", "archived": false, "createdAt": now_iso(), "updatedAt": now_iso(), "teams": []}))
        .collect();
    axum::Json(json!({"results": results})).into_response()
}

async fn hs_company_search(
    State(state): State<Arc<Mutex<HubSpotState>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Some(r) = hs_record(&state, "POST", "/crm/v3/objects/companies/search", "", &headers, &body).await {
        return r;
    }
    let delay = state.lock().unwrap().search_delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let s = state.lock().unwrap();
    let filter = &body["filterGroups"][0]["filters"][0];
    if filter["propertyName"] != "domain" || filter["operator"] != "EQ" {
        return hs_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "this fake searches companies by domain EQ only");
    }
    let want = filter["value"].as_str().unwrap_or_default().to_lowercase();
    // Only default properties come back unless listed in `properties` (search guide).
    let asked: Vec<&str> = body["properties"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let results: Vec<Value> = s
        .companies
        .iter()
        .filter(|c| c.1 == want)
        .map(|(id, domain, name, owner, modified)| {
            let mut p = serde_json::Map::new();
            p.insert("domain".into(), json!(domain));
            p.insert("name".into(), json!(name));
            p.insert("hs_object_id".into(), json!(id));
            if asked.contains(&"hubspot_owner_id") {
                p.insert("hubspot_owner_id".into(), json!(owner));
            }
            if asked.contains(&"hs_lastmodifieddate") {
                p.insert("hs_lastmodifieddate".into(), json!(modified));
            }
            json!({"id": id, "properties": p, "createdAt": modified, "updatedAt": modified, "archived": false})
        })
        .collect();
    axum::Json(json!({"total": results.len(), "results": results})).into_response()
}

impl FakeHubSpot {
    pub async fn start(token: &str) -> FakeHubSpot {
        let state = Arc::new(Mutex::new(HubSpotState { token: token.into(), ..Default::default() }));
        let app = Router::new()
            .route("/crm/v3/objects/contacts/batch/upsert", axum::routing::post(hs_upsert))
            .route("/crm/v3/owners", axum::routing::get(hs_owners))
            .route("/crm/v3/objects/companies/search", axum::routing::post(hs_company_search))
            .with_state(state.clone());
        FakeHubSpot { url: listen(app).await, state }
    }

    pub fn add_owner(&self, id: &str, email: &str) {
        self.state.lock().unwrap().owners.push((id.into(), email.into()));
    }

    pub fn add_company(&self, id: &str, domain: &str, name: &str, owner: &str, modified: &str) {
        self.state.lock().unwrap().companies.push((
            id.into(),
            domain.into(),
            name.into(),
            owner.into(),
            modified.into(),
        ));
    }

    pub fn script_upserts(&self, answers: &[Scripted]) {
        self.state.lock().unwrap().upsert_script.extend(answers.iter().cloned());
    }

    pub fn requests(&self, path: &str) -> Vec<CrmRequest> {
        self.state.lock().unwrap().requests.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Contacts with this property value.
    pub fn contacts_where(&self, property: &str, value: &str) -> Vec<(String, BTreeMap<String, String>)> {
        let s = self.state.lock().unwrap();
        s.contacts
            .iter()
            .filter(|(_, p)| p.get(property).is_some_and(|v| v.eq_ignore_ascii_case(value)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Salesforce
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
pub struct SalesforceState {
    pub client_id: String,
    pub client_secret: String,
    /// The external id field the org has on Lead.
    pub external_id_field: String,
    pub requests: Vec<CrmRequest>,
    /// Tokens that are still valid.
    pub tokens: Vec<String>,
    /// Lead Id → fields (the external id among them).
    pub leads: BTreeMap<String, BTreeMap<String, Value>>,
    /// (User Id, Email).
    pub users: Vec<(String, String)>,
    /// (Account Id, Name, Website, OwnerId, LastModifiedDate).
    pub accounts: Vec<(String, String, String, String, String)>,
    /// A validation rule of the org: a Lead with this Company is refused.
    pub refuse_company: Option<String>,
    /// Answers forced on the next collections upserts (403 REQUEST_LIMIT_EXCEEDED).
    pub upsert_script: VecDeque<Scripted>,
    next_id: u64,
    issued: u64,
}

#[derive(Clone)]
pub struct FakeSalesforce {
    pub url: String,
    pub state: Arc<Mutex<SalesforceState>>,
}

/// The REST API's error body: an array of `{message, errorCode, fields?}` (errorcodes.htm).
fn sf_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!([{"message": message, "errorCode": code}]))).into_response()
}

fn sf_record(
    state: &Arc<Mutex<SalesforceState>>,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Value,
) -> Option<Response> {
    let mut s = state.lock().unwrap();
    s.requests.push(CrmRequest::new(method, path, query, headers, body));
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = auth.strip_prefix("Bearer ").unwrap_or("");
    if !s.tokens.iter().any(|t| t == token) {
        // An expired token: 401 INVALID_SESSION_ID (errorcodes.htm; nango.dev's write-up).
        return Some(sf_error(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid"));
    }
    None
}

/// `POST /services/oauth2/token`, client credentials (quickstart_connecting.htm).
async fn sf_token(State(state): State<Arc<Mutex<SalesforceState>>>, body: String) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.requests.push(CrmRequest::new(
        "POST",
        "/services/oauth2/token",
        "",
        &HeaderMap::new(),
        &json!(form.keys().collect::<Vec<_>>()),
    ));
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("client_id") != Some(&s.client_id)
        || form.get("client_secret") != Some(&s.client_secret)
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_client", "error_description": "invalid client credentials"})),
        )
            .into_response();
    }
    s.issued += 1;
    let token = format!("00DTEST!token{}", s.issued);
    s.tokens.push(token.clone());
    axum::Json(json!({
        "access_token": token, "signature": "c2lnbmF0dXJl", "token_format": "opaque", "instance_url": "",
        "id": "https://login.salesforce.com/id/00D000000000001AAA/005000000000000AAA", "token_type": "Bearer",
        "issued_at": chrono::Utc::now().timestamp_millis().to_string()
    }))
    .into_response()
}

/// `PATCH /services/data/vXX.X/composite/sobjects/Lead/<ExternalIdField>` (collections upsert,
/// resources-composite-sobjects-collections-upsert, v67.0).
async fn sf_upsert(
    State(state): State<Arc<Mutex<SalesforceState>>>,
    Path((version, object, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let path = format!("/services/data/{version}/composite/sobjects/{object}/{field}");
    if let Some(r) = sf_record(&state, "PATCH", &path, "", &headers, &body) {
        return r;
    }
    let mut s = state.lock().unwrap();
    if let Some(x) = s.upsert_script.pop_front() {
        // An exceeded org limit is 403 REQUEST_LIMIT_EXCEEDED, not 429 (errorcodes.htm).
        return sf_error(
            StatusCode::from_u16(x.status).unwrap(),
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        );
    }
    // API v46.0 and later only.
    let v: f64 = version.trim_start_matches('v').parse().unwrap_or(0.0);
    if v < 46.0 || object != "Lead" {
        return sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist");
    }
    if field != s.external_id_field {
        return sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist");
    }
    let Some(records) = body["records"].as_array() else {
        return sf_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", "records is required");
    };
    if records.len() > 200 {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        );
    }
    // Sforce-Auto-Assign: absent or TRUE, the org's assignment rule replaces OwnerId (headers-autoassign).
    let auto_assign = headers.get("sforce-auto-assign").and_then(|v| v.to_str().ok()).map(str::to_uppercase);
    let keep_owner = auto_assign.as_deref() == Some("FALSE");
    let user_ids: Vec<String> = s.users.iter().map(|u| u.0.clone()).collect();
    let refuse = s.refuse_company.clone();
    let mut results = Vec::new();
    for r in records {
        if r["attributes"]["type"] != "Lead" || r.get("Id").is_some() {
            results.push(json!({"success": false, "errors": [{"statusCode": "INVALID_FIELD", "message": "records must be Leads without Id", "fields": []}]}));
            continue;
        }
        let Some(ext) = r[&field].as_str().map(str::to_owned) else {
            results.push(json!({"success": false, "errors": [{"statusCode": "MISSING_ARGUMENT", "message": format!("{field} not specified"), "fields": [field.clone()]}]}));
            continue;
        };
        let existing =
            s.leads.iter().find(|(_, l)| l.get(&field).and_then(Value::as_str) == Some(&ext)).map(|(k, _)| k.clone());
        // LastName and Company are required (Lead object reference).
        let missing: Vec<&str> = ["LastName", "Company"]
            .into_iter()
            .filter(|f| r[*f].as_str().is_none_or(str::is_empty) && existing.is_none())
            .collect();
        if !missing.is_empty() {
            results.push(json!({"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": format!("Required fields are missing: [{}]", missing.join(", ")), "fields": missing}]}));
            continue;
        }
        if let (Some(c), Some(bad)) = (r["Company"].as_str(), refuse.as_deref())
            && c == bad
        {
            results.push(json!({"success": false, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Company is on the do-not-contact list", "fields": []}]}));
            continue;
        }
        if let Some(o) = r["OwnerId"].as_str()
            && !user_ids.iter().any(|u| u == o)
        {
            results.push(json!({"success": false, "errors": [{"statusCode": "INVALID_CROSS_REFERENCE_KEY", "message": "invalid cross reference id", "fields": ["OwnerId"]}]}));
            continue;
        }
        let (id, created) = match existing {
            Some(id) => (id, false),
            None => {
                s.next_id += 1;
                (format!("00Q{:015}", s.next_id), true)
            }
        };
        let lead = s.leads.entry(id.clone()).or_default();
        for (k, v) in r.as_object().unwrap() {
            if k != "attributes" {
                lead.insert(k.clone(), v.clone());
            }
        }
        if !keep_owner {
            lead.insert("OwnerId".into(), json!("00G000000000001AAA"));
        }
        if created {
            // Status is "Defaulted on create" (Lead object reference).
            lead.entry("Status".to_owned()).or_insert(json!("Open - Not Contacted"));
            lead.insert("IsConverted".into(), json!(false));
        }
        lead.insert("LastModifiedDate".into(), json!(sf_time(chrono::Utc::now())));
        results.push(json!({"id": id, "success": true, "errors": [], "created": created}));
    }
    axum::Json(Value::Array(results)).into_response()
}

/// Salesforce's DateTime as the REST API writes it: `2026-12-02T10:00:00.000+0000`.
pub fn sf_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// `GET /services/data/vXX.X/query?q=` (resources-query): this fake evaluates the SOQL shapes
/// leadrouter sends: `SELECT fields FROM Lead|User|Account WHERE a AND b … [ORDER BY f [DESC]]
/// [LIMIT n]`, conditions `F = 'x'`, `F = true|false`, `F != null`, `F > <DateTime>`,
/// `F LIKE '%x%'`, and `ConvertedOpportunity.F` relationship fields. Anything else is
/// `MALFORMED_QUERY`, as Salesforce answers bad SOQL.
async fn sf_query(
    State(state): State<Arc<Mutex<SalesforceState>>>,
    Path(version): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let soql = q.get("q").cloned().unwrap_or_default();
    if let Some(r) = sf_record(&state, "GET", &format!("/services/data/{version}/query"), &soql, &headers, &Value::Null)
    {
        return r;
    }
    let s = state.lock().unwrap();
    match run_soql(&s, &soql) {
        Ok(records) => {
            axum::Json(json!({"totalSize": records.len(), "done": true, "records": records})).into_response()
        }
        Err(m) => sf_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", &m),
    }
}

fn run_soql(s: &SalesforceState, soql: &str) -> Result<Vec<Value>, String> {
    let rest = soql.strip_prefix("SELECT ").ok_or("expected SELECT")?;
    let (fields, rest) = rest.split_once(" FROM ").ok_or("expected FROM")?;
    let fields: Vec<&str> = fields.split(',').map(str::trim).collect();
    let (object, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let (rest, limit) = match rest.rsplit_once(" LIMIT ") {
        Some((r, n)) => (r, n.trim().parse::<usize>().map_err(|_| "bad LIMIT")?),
        None => (rest, usize::MAX),
    };
    let (where_part, order) = match rest.split_once(" ORDER BY ") {
        Some((w, o)) => (w, Some(o.trim())),
        None => (rest, None),
    };
    let where_part = where_part.trim().strip_prefix("WHERE ").unwrap_or(where_part.trim());
    let rows: Vec<BTreeMap<String, Value>> = match object {
        "Lead" => s
            .leads
            .iter()
            .map(|(id, l)| {
                let mut l = l.clone();
                l.insert("Id".into(), json!(id));
                l
            })
            .collect(),
        "User" => s
            .users
            .iter()
            .map(|(id, e)| {
                BTreeMap::from([
                    ("Id".to_owned(), json!(id)),
                    ("Email".to_owned(), json!(e)),
                    ("IsActive".to_owned(), json!(true)),
                ])
            })
            .collect(),
        "Account" => s
            .accounts
            .iter()
            .map(|(id, name, web, owner, modified)| {
                BTreeMap::from([
                    ("Id".to_owned(), json!(id)),
                    ("Name".to_owned(), json!(name)),
                    ("Website".to_owned(), json!(web)),
                    ("OwnerId".to_owned(), json!(owner)),
                    ("LastModifiedDate".to_owned(), json!(modified)),
                ])
            })
            .collect(),
        o => return Err(format!("sObject type '{o}' is not supported")),
    };
    let get = |row: &BTreeMap<String, Value>, f: &str| -> Value {
        match f.split_once('.') {
            Some((rel, f)) => row.get(rel).map(|r| r[f].clone()).unwrap_or(Value::Null),
            None => row.get(f).cloned().unwrap_or(Value::Null),
        }
    };
    let conditions: Vec<&str> = if where_part.is_empty() { vec![] } else { where_part.split(" AND ").collect() };
    let mut out: Vec<&BTreeMap<String, Value>> = Vec::new();
    'rows: for row in &rows {
        for c in &conditions {
            let c = c.trim();
            let ok = if let Some((f, v)) = c.split_once(" != ") {
                v.trim() == "null" && !get(row, f.trim()).is_null()
            } else if let Some((f, v)) = c.split_once(" LIKE ") {
                let pat = v.trim().trim_matches('\'').replace("\\_", "_").replace("\\%", "%");
                let inner = pat.trim_matches('%').to_lowercase();
                get(row, f.trim()).as_str().is_some_and(|x| x.to_lowercase().contains(&inner))
            } else if let Some((f, v)) = c.split_once(" > ") {
                let at =
                    leadrouter::crm::salesforce::parse_time(v.trim()).ok_or(format!("bad DateTime literal {v}"))?;
                get(row, f.trim()).as_str().and_then(leadrouter::crm::salesforce::parse_time).is_some_and(|t| t > at)
            } else if let Some((f, v)) = c.split_once(" = ") {
                let v = v.trim();
                let have = get(row, f.trim());
                match v {
                    "true" => have == json!(true),
                    "false" => have == json!(false),
                    _ if v.starts_with('\'') => {
                        let want = v.trim_matches('\'').replace("\\'", "'").replace("\\\\", "\\");
                        have.as_str().is_some_and(|h| h.eq_ignore_ascii_case(&want))
                    }
                    _ => return Err(format!("unexpected value {v}")),
                }
            } else {
                return Err(format!("unexpected condition {c}"));
            };
            if !ok {
                continue 'rows;
            }
        }
        out.push(row);
    }
    if let Some(o) = order {
        let (f, desc) = match o.strip_suffix(" DESC") {
            Some(f) => (f.trim(), true),
            None => (o.trim_end_matches(" ASC").trim(), false),
        };
        out.sort_by_key(|r| get(r, f).as_str().unwrap_or("").to_owned());
        if desc {
            out.reverse();
        }
    }
    Ok(out
        .into_iter()
        .take(limit)
        .map(|row| {
            let mut rec = serde_json::Map::new();
            rec.insert("attributes".into(), json!({"type": object, "url": format!("/services/data/v63.0/sobjects/{object}/{}", row["Id"].as_str().unwrap_or(""))}));
            for f in &fields {
                match f.split_once('.') {
                    Some((rel, sub)) => {
                        let r = row.get(rel).cloned().unwrap_or(Value::Null);
                        if r.is_null() {
                            rec.insert(rel.to_owned(), Value::Null);
                        } else {
                            let e = rec.entry(rel.to_owned()).or_insert_with(|| json!({"attributes": {"type": "Opportunity"}}));
                            e[sub] = r[sub].clone();
                        }
                    }
                    None => {
                        rec.insert((*f).to_owned(), get(row, f));
                    }
                }
            }
            Value::Object(rec)
        })
        .collect())
}

impl FakeSalesforce {
    pub async fn start(client_id: &str, client_secret: &str, external_id_field: &str) -> FakeSalesforce {
        let state = Arc::new(Mutex::new(SalesforceState {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            external_id_field: external_id_field.into(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/services/oauth2/token", axum::routing::post(sf_token))
            .route("/services/data/{version}/composite/sobjects/{object}/{field}", axum::routing::patch(sf_upsert))
            .route("/services/data/{version}/query", axum::routing::get(sf_query))
            .layer(axum::middleware::map_response(|mut r: Response| async move {
                // Every response carries the org's API usage (headers_api_usage.htm).
                r.headers_mut().insert("sforce-limit-info", "api-usage=18/100000".parse().unwrap());
                r
            }))
            .with_state(state.clone());
        FakeSalesforce { url: listen(app).await, state }
    }

    pub fn add_user(&self, id: &str, email: &str) {
        self.state.lock().unwrap().users.push((id.into(), email.into()));
    }

    pub fn add_account(&self, id: &str, name: &str, website: &str, owner: &str, modified: &str) {
        self.state.lock().unwrap().accounts.push((
            id.into(),
            name.into(),
            website.into(),
            owner.into(),
            modified.into(),
        ));
    }

    /// Every token issued so far stops working (as a session does when it expires).
    pub fn expire_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    pub fn requests(&self, path_suffix: &str) -> Vec<CrmRequest> {
        self.state.lock().unwrap().requests.iter().filter(|r| r.path.ends_with(path_suffix)).cloned().collect()
    }

    /// Leads whose external id is `ext`.
    pub fn leads_with(&self, ext: &str) -> Vec<(String, BTreeMap<String, Value>)> {
        let s = self.state.lock().unwrap();
        let f = s.external_id_field.clone();
        s.leads
            .iter()
            .filter(|(_, l)| l.get(&f).and_then(Value::as_str) == Some(ext))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A rep's change in Salesforce: the Lead's Status set (LastModifiedDate moves).
    pub fn set_status(&self, ext: &str, status: &str) {
        let mut s = self.state.lock().unwrap();
        let f = s.external_id_field.clone();
        for l in s.leads.values_mut().filter(|l| l.get(&f).and_then(Value::as_str) == Some(ext)) {
            l.insert("Status".into(), json!(status));
            l.insert("LastModifiedDate".into(), json!(sf_time(chrono::Utc::now())));
        }
    }

    /// The Lead converted; its opportunity closed won (or lost) a moment later.
    pub fn convert(&self, ext: &str, closed: Option<bool>) {
        let mut s = self.state.lock().unwrap();
        let f = s.external_id_field.clone();
        for l in s.leads.values_mut().filter(|l| l.get(&f).and_then(Value::as_str) == Some(ext)) {
            l.insert("IsConverted".into(), json!(true));
            l.insert("Status".into(), json!("Closed - Converted"));
            l.insert(
                "ConvertedOpportunity".into(),
                json!({"IsClosed": closed.is_some(), "IsWon": closed == Some(true), "LastModifiedDate": sf_time(chrono::Utc::now())}),
            );
        }
    }
}
