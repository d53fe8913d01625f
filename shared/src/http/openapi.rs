//! `GET /openapi.json`: the OpenAPI 3.1 document, built from the code's own types (utoipa
//! derives on `Lead`, `Delivery`, `Problem`, …) and from the route table below, which mirrors
//! `router()` line for line.

use super::problem::Problem;
use super::roster::{RepList, RepRemoved};
use crate::domain::metrics::Metrics;
use crate::domain::{FieldError, Lead, LeadId, RepRecord};
use crate::ports::Delivery;
use serde::Serialize;
use std::sync::LazyLock;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItemBuilder, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApiBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};

/// `202` for a stored lead.
#[derive(Serialize, ToSchema)]
pub struct LeadAccepted {
    #[schema(value_type = String)]
    pub lead_id: LeadId,
    /// Always `received`: the lead is stored and routing has begun.
    pub status: String,
}

/// A lead with its notification deliveries.
#[derive(Serialize, ToSchema)]
pub struct LeadDetail {
    #[serde(flatten)]
    pub lead: Lead,
    pub deliveries: Vec<DeliveryView>,
}

impl LeadDetail {
    pub fn new(lead: Lead, deliveries: Vec<Delivery>) -> LeadDetail {
        let deliveries = deliveries.into_iter().map(|d| DeliveryView { state: d.state(), delivery: d }).collect();
        LeadDetail { lead, deliveries }
    }
}

/// A delivery as the API shows it: the record and its state.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub state: crate::ports::DeliveryState,
}

#[derive(Serialize, ToSchema)]
pub struct LeadList {
    pub items: Vec<Lead>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/leads/{id}/status`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct StatusChange {
    /// One of accepted, contacted, qualified, won, lost; forwards only.
    #[schema(pattern = "^(accepted|contacted|qualified|won|lost)$")]
    pub status: String,
    /// The rep making the change: the lead's owner.
    pub by: String,
    pub note: Option<String>,
}

/// What a signed accept answers to a client that is not a browser.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AcceptResult {
    pub lead_id: String,
    pub status: crate::domain::LeadStatus,
    pub owner: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct MetaAccepted {
    /// How many `leadgen` changes the notification carried.
    pub accepted: usize,
    #[schema(value_type = Vec<String>)]
    pub lead_ids: Vec<LeadId>,
}

const FORM_FIELDS: [(&str, &str); 21] = [
    ("email", "An email address; one of email or phone is required."),
    ("phone", "A phone number, national (read with default_phone_region) or international."),
    ("first_name", ""),
    ("last_name", ""),
    ("name", ""),
    ("company", ""),
    ("job_title", ""),
    ("website", ""),
    ("country", "ISO 3166-1 alpha-2, or a common country name."),
    ("state", ""),
    ("city", ""),
    ("company_size", "A number such as 500, 1,000+ or 200-500."),
    ("industry", ""),
    ("message", ""),
    ("consent", "true/false, yes/no, on/off or 1/0."),
    ("utm_source", ""),
    ("utm_medium", ""),
    ("utm_campaign", ""),
    ("utm_term", ""),
    ("utm_content", ""),
    ("source", "Where the form lives; defaults to web."),
];

fn any(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::AnyValue).description((!description.is_empty()).then_some(description))
}

/// The web form: the fields API.md lists, a honeypot, and any other field kept as an attribute.
fn web_form() -> Schema {
    let mut b = ObjectBuilder::new().schema_type(Type::Object).description(Some(
        "Form fields; every field not listed is kept under the lead's attributes. Strings, numbers and booleans are read as text.",
    ));
    for (name, description) in FORM_FIELDS {
        b = b.property(name, any(description));
    }
    b = b.property(
        "website_url",
        any("Honeypot: leave empty. A non-empty value is answered like a success and stored as rejected."),
    );
    b.additional_properties(Some(AdditionalProperties::FreeForm(true))).into()
}

fn free_object(description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .into()
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn json(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

struct Op {
    b: OperationBuilder,
}

impl Op {
    fn new(id: &str, tag: &str, summary: &str) -> Op {
        Op { b: OperationBuilder::new().operation_id(Some(id)).tag(tag).summary(Some(summary)) }
    }

    fn ok(mut self, status: &str, description: &str, content_type: &str, schema: RefOr<Schema>) -> Op {
        self.b = self.b.response(
            status,
            ResponseBuilder::new().description(description).content(content_type, json(schema)).build(),
        );
        self
    }

    fn problems(mut self, statuses: &[(&str, &str)]) -> Op {
        for (status, description) in statuses {
            self.b = self.b.response(
                *status,
                ResponseBuilder::new()
                    .description(*description)
                    .content("application/problem+json", json(reference("Problem")))
                    .build(),
            );
        }
        self
    }

    fn body(mut self, content: &[(&str, Schema)], description: &str) -> Op {
        let mut rb = RequestBodyBuilder::new().description(Some(description)).required(Some(Required::True));
        for (ct, schema) in content {
            rb = rb.content(*ct, json(schema.clone()));
        }
        self.b = self.b.request_body(Some(rb.build()));
        self
    }

    fn param(mut self, name: &str, at: ParameterIn, required: bool, schema: Schema, description: &str) -> Op {
        self.b = self.b.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(at)
                .required(if required { Required::True } else { Required::False })
                .schema(Some(schema))
                .description(Some(description)),
        );
        self
    }

    fn admin(mut self) -> Op {
        self.b = self.b.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        self
    }
}

fn string() -> Schema {
    ObjectBuilder::new().schema_type(Type::String).into()
}

const STORE_DOWN: (&str, &str) = ("503", "The store did not answer, or the source's secret is not set; retry later.");
const TOO_LARGE: (&str, &str) = ("413", "The body is over max_body_bytes.");

fn document() -> utoipa::openapi::OpenApi {
    let mut schemas = Vec::new();
    for (name, schema, deps) in [
        (LeadAccepted::name(), LeadAccepted::schema(), schemas_of::<LeadAccepted>()),
        (LeadDetail::name(), LeadDetail::schema(), schemas_of::<LeadDetail>()),
        (LeadList::name(), LeadList::schema(), schemas_of::<LeadList>()),
        (Lead::name(), Lead::schema(), schemas_of::<Lead>()),
        (Delivery::name(), Delivery::schema(), schemas_of::<Delivery>()),
        (DeliveryView::name(), DeliveryView::schema(), schemas_of::<DeliveryView>()),
        (Health::name(), Health::schema(), schemas_of::<Health>()),
        (MetaAccepted::name(), MetaAccepted::schema(), schemas_of::<MetaAccepted>()),
        (Problem::name(), Problem::schema(), schemas_of::<Problem>()),
        (FieldError::name(), FieldError::schema(), schemas_of::<FieldError>()),
        (RepRecord::name(), RepRecord::schema(), schemas_of::<RepRecord>()),
        (RepList::name(), RepList::schema(), schemas_of::<RepList>()),
        (RepRemoved::name(), RepRemoved::schema(), schemas_of::<RepRemoved>()),
        (Metrics::name(), Metrics::schema(), schemas_of::<Metrics>()),
        (StatusChange::name(), StatusChange::schema(), schemas_of::<StatusChange>()),
        (AcceptResult::name(), AcceptResult::schema(), schemas_of::<AcceptResult>()),
        (
            super::privacy::ErasureRequest::name(),
            super::privacy::ErasureRequest::schema(),
            schemas_of::<super::privacy::ErasureRequest>(),
        ),
        (
            crate::pipeline::Erasure::name(),
            crate::pipeline::Erasure::schema(),
            schemas_of::<crate::pipeline::Erasure>(),
        ),
        (
            crate::pipeline::Preview::name(),
            crate::pipeline::Preview::schema(),
            schemas_of::<crate::pipeline::Preview>(),
        ),
        (
            crate::replay::ReplayReport::name(),
            crate::replay::ReplayReport::schema(),
            schemas_of::<crate::replay::ReplayReport>(),
        ),
    ] {
        schemas.push((name.to_string(), schema));
        schemas.extend(deps);
    }
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()))
        .build();

    let idempotency = |op: Op| {
        op.param(
            "Idempotency-Key",
            ParameterIn::Header,
            false,
            ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(255)).into(),
            "The same key returns the same lead_id and creates nothing new.",
        )
    };
    let post_lead = idempotency(Op::new("postLead", "ingest", "Submit a web-form lead"))
        .body(
            &[("application/json", web_form()), ("application/x-www-form-urlencoded", web_form())],
            "One of email or phone must be present.",
        )
        .ok("202", "Stored durably; routing has begun.", "application/json", reference("LeadAccepted"))
        .problems(&[
            ("400", "Malformed body or Idempotency-Key."),
            TOO_LARGE,
            ("415", "Content-Type is neither JSON nor urlencoded."),
            ("422", "Well-formed but invalid: every bad field is listed in errors."),
            ("429", "Over [server] rate_limit_per_minute for this client: nothing stored; Retry-After says when."),
            STORE_DOWN,
        ]);
    let list_leads = Op::new("listLeads", "admin", "Page through leads, newest first")
        .admin()
        .param(
            "status",
            ParameterIn::Query,
            false,
            crate::domain::LeadStatus::schema().into_schema(),
            "Only leads in this status.",
        )
        .param("owner", ParameterIn::Query, false, string(), "Only leads owned by this rep id.")
        .param("source", ParameterIn::Query, false, string(), "Only leads from this source.")
        .param(
            "limit",
            ParameterIn::Query,
            false,
            ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(500)).into(),
            "Page size, 1 to 500 (default 50).",
        )
        .param(
            "cursor",
            ParameterIn::Query,
            false,
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(128))
                .pattern(Some("^[0-9A-Za-z#]*$"))
                .into(),
            "next_cursor of the previous page; empty means the first page.",
        )
        .ok("200", "A page of leads.", "application/json", reference("LeadList"))
        .problems(&[
            ("400", "Malformed query string."),
            ("401", "Missing or wrong bearer token."),
            ("422", "Invalid parameters."),
            STORE_DOWN,
        ]);
    let get_lead = Op::new("getLead", "admin", "A lead with its score, routing, history and deliveries")
        .admin()
        .param("id", ParameterIn::Path, true, string(), "The lead id.")
        .ok("200", "The lead.", "application/json", reference("LeadDetail"))
        .problems(&[("401", "Missing or wrong bearer token."), ("404", "No such lead."), STORE_DOWN]);
    let replay = Op::new("routingReplay", "admin", "What a routing document would change over the stored leads, changing nothing")
        .admin()
        .param(
            "since",
            ParameterIn::Query,
            false,
            string(),
            "Only leads received on or after this date (YYYY-MM-DD) or RFC 3339 time; default all.",
        )
        .body(
            &[("application/toml", string()), ("text/plain", string())],
            "A routing document (TOML), as `leadrouter config check` takes it. It is not published.",
        )
        .ok(
            "200",
            "The report `leadrouter replay --format json` prints: leads, owner_changes, pools, reps, unassigned_total, excluded.",
            "application/json",
            reference("ReplayReport"),
        )
        .problems(&[
            ("400", "Malformed query string, or a body that is not UTF-8."),
            ("401", "Missing or wrong bearer token."),
            TOO_LARGE,
            ("422", "The document has problems (each with its line in errors), or since is not a date."),
            STORE_DOWN,
        ]);
    let preview = Op::new("routePreview", "admin", "Where a lead would go and why, changing nothing")
        .admin()
        .body(
            &[("application/json", web_form()), ("application/x-www-form-urlencoded", web_form())],
            "A lead's fields as a web form posts them (source may name any source), and optionally at (RFC 3339, default now).",
        )
        .ok(
            "200",
            "Grade, score, duplicate_of, the pool and rep it would go to (null when nobody would), why, and who was skipped.",
            "application/json",
            reference("Preview"),
        )
        .problems(&[
            ("400", "Malformed body."),
            ("401", "Missing or wrong bearer token."),
            TOO_LARGE,
            ("415", "Content-Type is neither JSON nor urlencoded."),
            ("422", "Well-formed but invalid: every bad field is listed in errors."),
            STORE_DOWN,
        ]);
    let erasure = Op::new("postErasure", "admin", "Erase a person's personal data (GDPR Art. 17, CCPA)")
        .admin()
        .body(
            &[("application/json", super::privacy::ErasureRequest::schema().into_schema())],
            "One of lead_id, email or phone: every lead sharing that person's identity keys is erased.",
        )
        .ok(
            "200",
            "Erased now, and still being routed (erased once they settle); both empty when nobody matched.",
            "application/json",
            reference("Erasure"),
        )
        .problems(&[
            ("400", "Not JSON, or fields other than lead_id, email and phone."),
            ("401", "Missing or wrong bearer token."),
            TOO_LARGE,
            ("422", "None of lead_id, email or phone, or one that cannot be what it names."),
            STORE_DOWN,
        ]);
    let health = Op::new("healthz", "ops", "Whether the store answers")
        .ok("200", "The store answers.", "application/json", reference("Health"))
        .problems(&[("503", "The store does not answer.")]);
    let meta_verify = Op::new("metaVerify", "webhooks", "Meta's subscription check")
        .param("hub.mode", ParameterIn::Query, false, string(), "subscribe")
        .param("hub.verify_token", ParameterIn::Query, false, string(), "[sources.meta] verify_token")
        .param("hub.challenge", ParameterIn::Query, false, string(), "Echoed back on success.")
        .ok("200", "The challenge, as given.", "text/plain", string().into())
        .problems(&[
            ("400", "Malformed query string."),
            ("403", "Wrong mode or verify token."),
            ("404", "The meta source is not configured."),
            STORE_DOWN,
        ]);
    let meta_notify = Op::new("metaNotify", "webhooks", "Meta leadgen change notifications")
        .param(
            "X-Hub-Signature-256",
            ParameterIn::Header,
            true,
            string(),
            "sha256=<hex HMAC-SHA256 of the raw body, keyed by the app secret>",
        )
        .body(
            &[("application/json", free_object("Meta's page webhook body; changes whose field is leadgen are taken."))],
            "",
        )
        .ok(
            "200",
            "Every leadgen change is durably recorded; fields are fetched next.",
            "application/json",
            reference("MetaAccepted"),
        )
        .problems(&[
            ("400", "Not JSON, or not the notification's shape."),
            ("401", "Missing or wrong X-Hub-Signature-256."),
            ("404", "The meta source is not configured."),
            TOO_LARGE,
            ("422", "A leadgen change without a usable leadgen_id."),
            STORE_DOWN,
        ]);
    let google = Op::new("googleLead", "webhooks", "Google Ads lead form webhook")
        .body(&[("application/json", free_object("lead_id, user_column_data, google_key, is_test, campaign ids…"))], "")
        .ok("200", "Stored.", "application/json", free_object("An empty object.").into())
        .problems(&[
            ("400", "Not JSON."),
            ("401", "google_key missing or wrong."),
            ("404", "The google source is not configured."),
            TOO_LARGE,
            ("422", "lead_id is missing."),
            STORE_DOWN,
        ]);
    let generic =
        idempotency(Op::new("genericLead", "webhooks", "Any signed JSON, mapped by the source's JSON Pointers"))
            .param("source", ParameterIn::Path, true, string(), "A [sources.generic.NAME] of the routing document.")
            .param(
                "X-Leadrouter-Signature",
                ParameterIn::Header,
                true,
                string(),
                "t=<unix>,v1=<hex HMAC-SHA256 of \"t.body\">; five minutes' tolerance.",
            )
            .body(&[("application/json", free_object("Any JSON document."))], "")
            .ok("202", "Stored durably; routing has begun.", "application/json", reference("LeadAccepted"))
            .problems(&[
                ("400", "Not JSON, or a malformed Idempotency-Key."),
                ("401", "Missing, wrong or stale signature."),
                ("404", "No such source."),
                TOO_LARGE,
                ("422", "The map found neither email nor phone (the empty pointers are named), or a field is invalid."),
                STORE_DOWN,
            ]);
    let unauthorized = ("401", "Missing or wrong bearer token.");
    let post_status = Op::new("postStatus", "sales", "Move a lead through the sales statuses (its owner only)")
        .admin()
        .param("id", ParameterIn::Path, true, string(), "The lead id.")
        .body(&[("application/json", StatusChange::schema().into_schema())], "")
        .ok("200", "The lead as changed.", "application/json", reference("LeadDetail"))
        .problems(&[
            ("400", "Not JSON."),
            unauthorized,
            ("404", "No such lead."),
            ("409", "by is not the owner (owner names who is), or the lead cannot move there from its status."),
            TOO_LARGE,
            ("422", "status or by missing or invalid."),
            STORE_DOWN,
        ]);
    let link = |op: Op| {
        op.param("id", ParameterIn::Path, true, string(), "The lead id.")
            .param("rep", ParameterIn::Query, true, string(), "The rep the link was sent to.")
            .param("exp", ParameterIn::Query, true, string(), "When the link expires, in unix seconds.")
            .param(
                "sig",
                ParameterIn::Query,
                true,
                string(),
                "Hex HMAC-SHA256 of the lead id, rep id and exp, keyed with [server] accept_secret.",
            )
    };
    let accept_page = link(Op::new("acceptPage", "sales", "The accept link: the lead's summary and a confirm button"))
        .ok("200", "An HTML page.", "text/html", string().into())
        .problems(&[
            ("403", "The link was tampered with or not issued here; HTML for a browser."),
            ("404", "No such lead."),
            ("409", "The rep does not own the lead now (owner names who does); HTML for a browser."),
            ("410", "The link has expired; HTML for a browser."),
            STORE_DOWN,
        ]);
    let accept = link(Op::new("accept", "sales", "Accept the lead for the link's rep"))
        .ok(
            "200",
            "Accepted (again, harmlessly, if it was); HTML for a browser.",
            "application/json",
            reference("AcceptResult"),
        )
        .problems(&[
            ("403", "The link was tampered with or not issued here; HTML for a browser."),
            ("404", "No such lead."),
            ("409", "The rep does not own the lead now (owner names who does)."),
            ("410", "The link has expired; HTML for a browser."),
            STORE_DOWN,
        ]);
    let list_reps = Op::new("listReps", "roster", "The roster: the routing document's reps with the changes made here")
        .admin()
        .ok("200", "Every rep.", "application/json", reference("RepList"))
        .problems(&[unauthorized, STORE_DOWN]);
    let rep_id = |op: Op| op.param("id", ParameterIn::Path, true, string(), "The rep id.");
    let get_rep = rep_id(Op::new("getRep", "roster", "One rep"))
        .admin()
        .ok("200", "The rep.", "application/json", reference("RepRecord"))
        .problems(&[unauthorized, ("404", "No such rep."), STORE_DOWN]);
    let put_rep = rep_id(Op::new("putRep", "roster", "Add or replace a rep; inactive reps' open leads are reassigned"))
        .admin()
        .body(&[("application/json", RepRecord::schema().into_schema())], "")
        .ok("200", "The rep as the roster has them now.", "application/json", reference("RepRecord"))
        .problems(&[
            ("400", "Not JSON, or an unknown field."),
            unauthorized,
            TOO_LARGE,
            ("422", "Every invalid field listed."),
            STORE_DOWN,
        ]);
    let delete_rep =
        rep_id(Op::new("deleteRep", "roster", "Remove a rep: nothing new for them, open leads reassigned"))
            .admin()
            .ok("200", "Removed.", "application/json", reference("RepRemoved"))
            .problems(&[unauthorized, ("404", "No such rep."), STORE_DOWN]);
    let metrics =
        Op::new("metrics", "metrics", "Funnel metrics per source, rep and pool over leads received in a window")
            .admin()
            .param("from", ParameterIn::Query, false, string(), "RFC 3339 or YYYY-MM-DD; default 30 days before to.")
            .param("to", ParameterIn::Query, false, string(), "RFC 3339 or YYYY-MM-DD (exclusive); default now.")
            .ok("200", "The metrics.", "application/json", reference("Metrics"))
            .problems(&[
                ("400", "Malformed query string."),
                unauthorized,
                ("422", "from or to invalid, or from ≥ to."),
                STORE_DOWN,
            ]);
    let openapi = Op::new("openapi", "ops", "This document").ok(
        "200",
        "OpenAPI 3.1.",
        "application/json",
        free_object("").into(),
    );

    let paths = PathsBuilder::new()
        .path(
            "/v1/leads",
            PathItemBuilder::new()
                .operation(HttpMethod::Post, post_lead.b)
                .operation(HttpMethod::Get, list_leads.b)
                .build(),
        )
        .path("/v1/leads/{id}", PathItemBuilder::new().operation(HttpMethod::Get, get_lead.b).build())
        .path("/v1/leads/{id}/status", PathItemBuilder::new().operation(HttpMethod::Post, post_status.b).build())
        .path(
            "/v1/leads/{id}/accept",
            PathItemBuilder::new()
                .operation(HttpMethod::Get, accept_page.b)
                .operation(HttpMethod::Post, accept.b)
                .build(),
        )
        .path("/v1/reps", PathItemBuilder::new().operation(HttpMethod::Get, list_reps.b).build())
        .path(
            "/v1/reps/{id}",
            PathItemBuilder::new()
                .operation(HttpMethod::Get, get_rep.b)
                .operation(HttpMethod::Put, put_rep.b)
                .operation(HttpMethod::Delete, delete_rep.b)
                .build(),
        )
        .path("/v1/metrics", PathItemBuilder::new().operation(HttpMethod::Get, metrics.b).build())
        .path("/v1/erasures", PathItemBuilder::new().operation(HttpMethod::Post, erasure.b).build())
        .path("/v1/route/preview", PathItemBuilder::new().operation(HttpMethod::Post, preview.b).build())
        .path("/v1/routing/replay", PathItemBuilder::new().operation(HttpMethod::Post, replay.b).build())
        .path("/healthz", PathItemBuilder::new().operation(HttpMethod::Get, health.b).build())
        .path(
            "/v1/webhooks/meta",
            PathItemBuilder::new()
                .operation(HttpMethod::Get, meta_verify.b)
                .operation(HttpMethod::Post, meta_notify.b)
                .build(),
        )
        .path("/v1/webhooks/google", PathItemBuilder::new().operation(HttpMethod::Post, google.b).build())
        .path("/v1/webhooks/generic/{source}", PathItemBuilder::new().operation(HttpMethod::Post, generic.b).build())
        .path("/openapi.json", PathItemBuilder::new().operation(HttpMethod::Get, openapi.b).build())
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("leadrouter")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Inbound leads validated, deduplicated, scored, assigned and notified, exactly once.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

fn schemas_of<T: ToSchema>() -> Vec<(String, RefOr<Schema>)> {
    let mut v = Vec::new();
    T::schemas(&mut v);
    v
}

trait IntoSchema {
    fn into_schema(self) -> Schema;
}

impl IntoSchema for RefOr<Schema> {
    fn into_schema(self) -> Schema {
        match self {
            RefOr::T(s) => s,
            RefOr::Ref(_) => string(),
        }
    }
}

/// The document, serialized once.
pub static OPENAPI_JSON: LazyLock<String> =
    LazyLock::new(|| document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));

pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI_JSON.as_str()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_route_and_its_problems() {
        let doc: serde_json::Value = serde_json::from_str(&OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for (path, method) in [
            ("/v1/leads", "post"),
            ("/v1/leads", "get"),
            ("/v1/leads/{id}", "get"),
            ("/healthz", "get"),
            ("/v1/webhooks/meta", "get"),
            ("/v1/webhooks/meta", "post"),
            ("/v1/webhooks/google", "post"),
            ("/v1/webhooks/generic/{source}", "post"),
            ("/v1/leads/{id}/status", "post"),
            ("/v1/leads/{id}/accept", "get"),
            ("/v1/leads/{id}/accept", "post"),
            ("/v1/reps", "get"),
            ("/v1/reps/{id}", "put"),
            ("/v1/reps/{id}", "delete"),
            ("/v1/metrics", "get"),
            ("/v1/erasures", "post"),
            ("/v1/route/preview", "post"),
            ("/v1/routing/replay", "post"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        }
        assert!(doc["paths"]["/v1/leads"]["post"]["responses"]["422"].is_object());
        for schema in [
            "Lead",
            "Contact",
            "LeadStatus",
            "HistoryEntry",
            "Delivery",
            "Problem",
            "FieldError",
            "RulePoints",
            "Touch",
        ] {
            assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema}");
        }
    }
}
