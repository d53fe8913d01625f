//! `GET /openapi.json`: the OpenAPI 3.1 document, produced from the route table itself. Each
//! route is registered as a [`Route`]: a handler and its operation per method, so the router and
//! the document come from one list (utoipa-axum's `OpenApiRouter`) and cannot drift. Schemas
//! come from the code's own types (utoipa derives on `Lead`, `Delivery`, `Problem`, …), collected
//! from the operations that name them.

use super::problem::Problem;
use crate::domain::{Lead, LeadId};
use crate::ports::Delivery;
use axum::handler::Handler;
use axum::routing::MethodRouter;
use serde::Serialize;
use std::sync::LazyLock;
use utoipa::ToSchema;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItemBuilder, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApiBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
};
use utoipa_axum::PathItemExt;
use utoipa_axum::router::UtoipaMethodRouter;

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

pub(super) fn free_object(description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .into()
}

fn json(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

pub(super) fn string() -> Schema {
    ObjectBuilder::new().schema_type(Type::String).into()
}

/// One operation's documentation, and the named schemas it refers to.
pub(super) struct Op {
    b: OperationBuilder,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Op {
    pub(super) fn new(id: &str, tag: &str, summary: &str) -> Op {
        Op { b: OperationBuilder::new().operation_id(Some(id)).tag(tag).summary(Some(summary)), schemas: Vec::new() }
    }

    /// A named schema this operation refers to, with the schemas it refers to in turn.
    fn named<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let name = T::name().to_string();
        if !self.schemas.iter().any(|(n, _)| *n == name) {
            self.schemas.push((name.clone(), T::schema()));
            T::schemas(&mut self.schemas);
        }
        RefOr::Ref(Ref::from_schema_name(name))
    }

    /// A success answering `T` as JSON.
    pub(super) fn ok_json<T: ToSchema>(mut self, status: &str, description: &str) -> Op {
        let schema = self.named::<T>();
        self.ok(status, description, "application/json", schema)
    }

    /// A success answering `T` as JSON, or the other content types given, by `Accept`.
    pub(super) fn ok_json_or<T: ToSchema>(mut self, status: &str, description: &str, others: &[(&str, Schema)]) -> Op {
        let schema = self.named::<T>();
        let mut r = ResponseBuilder::new().description(description).content("application/json", json(schema));
        for (ct, other) in others {
            r = r.content(*ct, json(other.clone()));
        }
        self.b = self.b.response(status, r.build());
        self
    }

    pub(super) fn ok(
        mut self,
        status: &str,
        description: &str,
        content_type: &str,
        schema: impl Into<RefOr<Schema>>,
    ) -> Op {
        self.b = self.b.response(
            status,
            ResponseBuilder::new().description(description).content(content_type, json(schema)).build(),
        );
        self
    }

    pub(super) fn problems(mut self, statuses: &[(&str, &str)]) -> Op {
        let problem = self.named::<Problem>();
        for (status, description) in statuses {
            self.b = self.b.response(
                *status,
                ResponseBuilder::new()
                    .description(*description)
                    .content("application/problem+json", json(problem.clone()))
                    .build(),
            );
        }
        self
    }

    pub(super) fn body(mut self, content: &[(&str, Schema)], description: &str) -> Op {
        let mut rb = RequestBodyBuilder::new().description(Some(description)).required(Some(Required::True));
        for (ct, schema) in content {
            rb = rb.content(*ct, json(schema.clone()));
        }
        self.b = self.b.request_body(Some(rb.build()));
        self
    }

    /// A JSON body of type `T`, written out in place.
    pub(super) fn body_json<T: ToSchema>(self, description: &str) -> Op {
        self.body(&[("application/json", T::schema().into_schema())], description)
    }

    /// The web form's fields, as JSON or urlencoded.
    pub(super) fn form_body(self, description: &str) -> Op {
        self.body(&[("application/json", web_form()), ("application/x-www-form-urlencoded", web_form())], description)
    }

    pub(super) fn param(
        mut self,
        name: &str,
        at: ParameterIn,
        required: bool,
        schema: Schema,
        description: &str,
    ) -> Op {
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

    /// The bearer token is required.
    pub(super) fn admin(mut self) -> Op {
        self.b = self.b.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        self
    }

    /// The `Idempotency-Key` header.
    pub(super) fn idempotency(self) -> Op {
        self.param(
            "Idempotency-Key",
            ParameterIn::Header,
            false,
            ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(255)).into(),
            "The same key returns the same lead_id and creates nothing new.",
        )
    }
}

pub(super) const STORE_DOWN: (&str, &str) =
    ("503", "The store did not answer, or the source's secret is not set; retry later.");
pub(super) const TOO_LARGE: (&str, &str) = ("413", "The body is over max_body_bytes.");
pub(super) const UNAUTHORIZED: (&str, &str) = ("401", "Missing or wrong bearer token.");

/// One path of the API: for each method, its handler and its operation, registered together.
pub(super) struct Route<S> {
    path: &'static str,
    item: PathItemBuilder,
    router: MethodRouter<S>,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl<S: Clone + Send + Sync + 'static> Route<S> {
    pub(super) fn new(path: &'static str) -> Route<S> {
        Route { path, item: PathItemBuilder::new(), router: MethodRouter::new(), schemas: Vec::new() }
    }

    /// `handler` answers `method` on this path, and `op` documents it.
    pub(super) fn on<H, T>(mut self, method: HttpMethod, handler: H, op: Op) -> Route<S>
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.router = self.router.on(method.to_method_filter(), handler);
        self.item = self.item.operation(method, op.b);
        for (name, schema) in op.schemas {
            if !self.schemas.iter().any(|(n, _)| *n == name) {
                self.schemas.push((name, schema));
            }
        }
        self
    }

    /// Changes the path's method router (a route layer, say); the document is unchanged.
    pub(super) fn map(mut self, f: impl FnOnce(MethodRouter<S>) -> MethodRouter<S>) -> Route<S> {
        self.router = f(self.router);
        self
    }
}

impl<S> From<Route<S>> for UtoipaMethodRouter<S> {
    fn from(r: Route<S>) -> UtoipaMethodRouter<S> {
        (r.schemas, PathsBuilder::new().path(r.path, r.item.build()).build(), r.router)
    }
}

/// What the document says before any route is added: its info and the bearer scheme.
pub(super) fn base() -> utoipa::openapi::OpenApi {
    let components = ComponentsBuilder::new()
        .security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()))
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
        .components(Some(components))
        .build()
}

/// The document of every route [`super::router`] serves. The route table is generic over the
/// store, queue and notifier only for its handlers; the document is the same for any of them.
fn document() -> utoipa::openapi::OpenApi {
    use crate::adapters::{channel::ChannelQueue, notifier::HttpNotifier, sqlite::SqliteStore};
    super::api::<SqliteStore, ChannelQueue, HttpNotifier>(None, true).into_openapi()
}

pub(super) fn openapi_op() -> Op {
    Op::new("openapi", "ops", "This document").ok("200", "OpenAPI 3.1.", "application/json", free_object(""))
}

pub(super) trait IntoSchema {
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
