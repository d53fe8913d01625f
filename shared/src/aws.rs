//! The serverless runtime's wiring: what every Lambda does at cold start (clients built once,
//! the routing document read from the table once per container), and the handlers each
//! function runs. The functions' `main.rs` files only pick one.

use crate::adapters::dynamo::DynamoStore;
use crate::adapters::graph::GraphFetcher;
use crate::adapters::notifier::{HttpNotifier, Mailer};
use crate::adapters::sqs::SqsQueue;
use crate::config::{Secret, Settings};
use crate::domain::Stage;
use crate::pipeline::{Pipeline, RetryPolicy, Secrets};
use crate::ports::{Clock, SystemClock};
use crate::ports::{LeadStore, Message, Notifier, Queue};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;

pub type AwsPipeline = Pipeline<DynamoStore, SqsQueue, HttpNotifier>;
pub type Error = lambda_runtime::Error;

/// JSON logs for CloudWatch; `RUST_LOG` sets the level (info by default).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).without_time().with_current_span(true).try_init();
}

/// Builds the pipeline from the function's environment: `LEADROUTER_TABLE`, the queue URLs
/// (`LEADROUTER_QUEUE_<STAGE>`), and the secrets the routing document names.
pub async fn pipeline_from_env() -> Result<AwsPipeline, Error> {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let table = env("LEADROUTER_TABLE").ok_or("LEADROUTER_TABLE is not set")?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&conf), table);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&conf), SqsQueue::urls_from_env(env)?);
    pipeline(store, queue, &env, &conf).await
}

/// The pipeline over a store and queue, with the routing document read from the store; `conf`
/// builds the SES client when `[email]` names no SMTP server.
pub async fn pipeline(
    store: DynamoStore,
    queue: SqsQueue,
    env: &dyn Fn(&str) -> Option<String>,
    conf: &aws_config::SdkConfig,
) -> Result<AwsPipeline, Error> {
    let doc = store
        .load_routing()
        .await?
        .ok_or("the table holds no routing document: run `leadrouter config push FILE --table NAME`")?;
    let settings = Settings::parse(&doc).map_err(|p| format!("the stored routing document has problems:\n{p}"))?;
    let store = store.with_delete_after(settings.retention.delete_after);
    let resolved = Secrets::resolve(&settings, env, None)?;
    for w in &resolved.warnings {
        tracing::warn!("{w}");
    }
    let secrets = resolved.secrets;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mailer = match &settings.email {
        Some(e) if e.smtp_url.is_none() => Some(Mailer::ses(aws_sdk_sesv2::Client::new(conf), &e.from)?),
        _ => crate::adapters::notifier::mailer_for(&settings, &secrets)?,
    };
    let notifier = HttpNotifier::new(secrets.webhook_secret.clone(), clock.clone()).with_mailer(mailer);
    let notifier =
        if settings.server.allow_private_targets { notifier } else { notifier.guarding(settings.document_targets()) };
    let fetcher = Arc::new(match &settings.sources.meta {
        Some(m) => GraphFetcher::new(
            m.graph_base_url.clone(),
            secrets.source("meta.access_token").map(Secret::new),
            m.fields.clone(),
        ),
        None => GraphFetcher::new(String::new(), None, Default::default()),
    });
    // On Lambda a failing delivery goes back to SQS, whose visibility timeout spaces the retries.
    let retry = RetryPolicy { inline_attempts: 2, ..RetryPolicy::default() };
    // Parked deliveries go back to SQS, whose visibility timeout spaces their returns.
    let circuits = Arc::new(crate::pipeline::circuit::Circuits::new(crate::pipeline::circuit::CircuitPolicy {
        hold_parked: false,
        ..Default::default()
    }));
    let crm = crate::crm::Crm::from_settings(&settings.crm, &secrets);
    Ok(Pipeline {
        store,
        queue,
        notifier,
        fetcher,
        clock,
        settings: Arc::new(settings),
        secrets,
        retry,
        circuits,
        events: None,
        crm,
    })
}

/// The admin function: the one Router behind API Gateway.
pub async fn run_http() -> Result<(), Error> {
    init_tracing();
    let pipeline = Arc::new(pipeline_from_env().await?);
    lambda_http::run(crate::http::router(pipeline)).await
}

/// The ingest function: the Router's public routes, behind API Gateway and its own function
/// URL (the same event format; no API Gateway request charge).
pub async fn run_ingest() -> Result<(), Error> {
    init_tracing();
    let pipeline = Arc::new(pipeline_from_env().await?);
    lambda_http::run(crate::http::public_router(pipeline)).await
}

/// A stage function: SQS batches in, partial batch failures out.
pub async fn run_stage(stage: Stage) -> Result<(), Error> {
    init_tracing();
    let pipeline = pipeline_from_env().await?;
    let pipeline = &pipeline;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // Lambda's deadline for this invocation: notify begins no attempt it could not finish.
        let deadline = chrono::DateTime::from_timestamp_millis(event.context.deadline as i64)
            .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::seconds(60));
        let response = crate::pipeline::DEADLINE.scope(deadline, handle_batch(pipeline, stage, event.payload)).await;
        Ok::<SqsBatchResponse, Error>(response)
    }))
    .await
}

/// The sweep function, on a schedule: SLA deadlines, unassigned leads, open leads of reps who
/// left, and every lead waiting for a stage for over 5 minutes is sent to it again (a message
/// lost between two writes, or one parked in a dead-letter queue that was purged). Stages are
/// guarded, so a lead that was only slow is not harmed.
pub async fn run_sweep() -> Result<(), Error> {
    init_tracing();
    let pipeline = pipeline_from_env().await?;
    let pipeline = &pipeline;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        let swept = pipeline.sweep(Some(chrono::Duration::minutes(5))).await?;
        // Retention reads every old lead's key on DynamoDB: once an hour, not every minute.
        let retained =
            if chrono::Timelike::minute(&pipeline.clock.now()) == 0 { Some(pipeline.retention().await?) } else { None };
        Ok::<serde_json::Value, Error>(serde_json::json!({ "swept": swept, "retained": retained }))
    }))
    .await
}

/// Runs one stage over an SQS batch and reports the messages to retry. A message that cannot be
/// decoded is reported too: SQS redelivers it until `maxReceiveCount`, then moves it to the
/// stage's dead-letter queue, so it is kept, not retried forever.
pub async fn handle_batch<S: LeadStore, Q: Queue, N: Notifier>(
    pipeline: &Pipeline<S, Q, N>,
    stage: Stage,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let mut decoded: Vec<(String, Message)> = Vec::with_capacity(event.records.len());
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        match record.body.as_deref().map(serde_json::from_str::<Message>) {
            Some(Ok(m)) => decoded.push((id, m)),
            _ => {
                tracing::error!(message_id = %id, stage = stage.as_str(), "undecodable message; it goes to the dead-letter queue");
                failures.push(id);
            }
        }
    }
    let messages: Vec<Message> = decoded.iter().map(|(_, m)| m.clone()).collect();
    let results = pipeline.run(stage, messages).await;
    for ((id, m), result) in decoded.into_iter().zip(results) {
        match result {
            Ok(()) => {}
            // No retry can help: to the dead-letter queue at once, with why (should that
            // fail, the message is redelivered and SQS moves it after `maxReceiveCount`).
            Err(e) if !e.is_retryable() => {
                tracing::error!(message_id = %id, lead_id = %m.lead_id, stage = stage.as_str(), error = %e, "to the dead-letter queue");
                if let Err(q) = pipeline.queue.dead_letter(stage, &m, &e.to_string()).await {
                    tracing::warn!(message_id = %id, error = %q, "could not dead-letter; it will be redelivered");
                    failures.push(id);
                }
            }
            Err(e) => {
                tracing::warn!(message_id = %id, lead_id = %m.lead_id, stage = stage.as_str(), error = %e, "will be retried");
                failures.push(id);
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}
