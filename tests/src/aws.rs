//! Clients for the AWS emulator that `scripts/with-moto.sh` starts (and `make test` uses).

use leadrouter::adapters::dynamo::DynamoStore;

/// Fails with the way to run it when no emulator is configured: never skips silently.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: these tests need the moto server. Run them with \
             `./scripts/with-moto.sh cargo test ...` or `make test`, which start it."
        )
    });
    assert!(
        endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
        "AWS_ENDPOINT_URL must point at a local emulator, not {endpoint}"
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// A DynamoDB store on a fresh table of its own.
pub async fn fresh_dynamo() -> DynamoStore {
    fresh_dynamo_counted(None, None).await
}

pub async fn fresh_dynamo_counted(counter: Option<RequestCounter>, meter: Option<CapacityMeter>) -> DynamoStore {
    let conf = sdk_config().await;
    let mut b = aws_sdk_dynamodb::config::Builder::from(&conf);
    if let Some(c) = counter {
        b = b.interceptor(c);
    }
    if let Some(m) = meter {
        b = b.interceptor(m);
    }
    let client = aws_sdk_dynamodb::Client::from_conf(b.build());
    let table = format!("leadrouter-test-{}", leadrouter::domain::LeadId::new().as_str().to_ascii_lowercase());
    let store = DynamoStore::new(client, table);
    store.create_table().await.expect("create the table on the emulator");
    store
}

use aws_lambda_events::event::sqs::SqsEvent;
use leadrouter::adapters::sqs::SqsQueue;
use leadrouter::aws::AwsPipeline;
use leadrouter::aws::handle_batch;
use leadrouter::domain::Stage;
use std::collections::HashMap;
use std::sync::Arc;

/// One queue per stage on the emulator, named uniquely for this test.
pub async fn fresh_queues(counter: Option<RequestCounter>) -> (aws_sdk_sqs::Client, HashMap<Stage, String>) {
    let client = sqs_client(counter).await;
    let run = leadrouter::domain::LeadId::new().as_str().to_ascii_lowercase();
    let mut urls = HashMap::new();
    use aws_sdk_sqs::types::QueueAttributeName as A;
    for stage in Stage::ALL {
        // Each with its dead-letter queue, as the SAM template has it; after 50 receives rather
        // than its 5, since `drain_queues` hands a failed message back at once, not after the
        // visibility timeout (the throttling test fails some messages many times in a row).
        let dlq = client
            .create_queue()
            .queue_name(format!("lr-{run}-{}-dlq", stage.as_str()))
            .send()
            .await
            .expect("create dead-letter queue");
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(dlq.queue_url().unwrap_or_default())
            .attribute_names(A::QueueArn)
            .send()
            .await
            .expect("dead-letter queue ARN")
            .attributes()
            .and_then(|a| a.get(&A::QueueArn).cloned())
            .expect("a QueueArn");
        let out = client
            .create_queue()
            .queue_name(format!("lr-{run}-{}", stage.as_str()))
            .attributes(A::VisibilityTimeout, "60")
            .attributes(A::RedrivePolicy, format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"50"}}"#))
            .send()
            .await
            .expect("create queue");
        urls.insert(stage, out.queue_url.expect("queue url"));
    }
    (client, urls)
}

async fn sqs_client(counter: Option<RequestCounter>) -> aws_sdk_sqs::Client {
    let conf = sdk_config().await;
    let mut b = aws_sdk_sqs::config::Builder::from(&conf);
    if let Some(c) = counter {
        b = b.interceptor(c);
    }
    aws_sdk_sqs::Client::from_conf(b.build())
}

/// How the event source mapping is played.
#[derive(Clone, Copy, Default)]
pub struct Delivery {
    /// Hand every message to the handler twice (in two batches), as at-least-once allows.
    pub twice: bool,
    /// Shuffle each batch.
    pub shuffle: bool,
}

/// Plays Lambda's SQS event source mapping until every queue is empty: receive a batch, call
/// the real handler, delete exactly the messages it did not report as failed. Returns how many
/// handler invocations it made.
pub async fn drain_queues<S: leadrouter::ports::LeadStore, N: leadrouter::ports::Notifier>(
    pipeline: &leadrouter::pipeline::Pipeline<S, SqsQueue, N>,
    sqs: &aws_sdk_sqs::Client,
    urls: &HashMap<Stage, String>,
    how: Delivery,
) -> usize {
    use rand::seq::SliceRandom;
    let mut invocations = 0;
    let mut idle_rounds = 0;
    while idle_rounds < 2 {
        let mut got_any = false;
        for stage in Stage::ALL {
            let url = &urls[&stage];
            let out = sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.expect("receive");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                continue;
            }
            got_any = true;
            let mut records: Vec<serde_json::Value> = messages
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                        "eventSource": "aws:sqs", "awsRegion": "us-east-1"
                    })
                })
                .collect();
            let rounds = if how.twice { 2 } else { 1 };
            let mut failed: std::collections::HashSet<String> = std::collections::HashSet::new();
            for _ in 0..rounds {
                if how.shuffle {
                    records.shuffle(&mut rand::rng());
                }
                let event: SqsEvent =
                    serde_json::from_value(serde_json::json!({ "Records": records })).expect("sqs event");
                let response = handle_batch(pipeline, stage, event).await;
                invocations += 1;
                failed.extend(response.batch_item_failures.into_iter().map(|f| f.item_identifier));
            }
            for m in &messages {
                if !failed.contains(m.message_id().unwrap_or_default()) {
                    sqs.delete_message()
                        .queue_url(url)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                        .expect("delete");
                } else {
                    // Make it visible again at once rather than after the visibility timeout.
                    sqs.change_message_visibility()
                        .queue_url(url)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .visibility_timeout(0)
                        .send()
                        .await
                        .expect("release");
                }
            }
        }
        idle_rounds = if got_any { 0 } else { idle_rounds + 1 };
    }
    invocations
}

/// The AWS pipeline over fresh emulator resources with `doc` pushed to the table.
pub async fn aws_pipeline(doc: &str) -> (AwsPipeline, aws_sdk_sqs::Client, HashMap<Stage, String>) {
    aws_pipeline_counted(doc, None, None).await
}

/// As [`aws_pipeline`], with the pipeline's own clients counting their requests. The test's
/// SQS client (playing the event source mapping) is separate and not counted.
pub async fn aws_pipeline_counted(
    doc: &str,
    counter: Option<RequestCounter>,
    meter: Option<CapacityMeter>,
) -> (AwsPipeline, aws_sdk_sqs::Client, HashMap<Stage, String>) {
    let store = fresh_dynamo_counted(counter.clone(), meter).await;
    store.push_routing(doc, chrono::Utc::now()).await.expect("push routing");
    let (sqs, urls) = fresh_queues(None).await;
    let queue = SqsQueue::new(sqs_client(counter).await, urls.clone());
    // The test document's [server] secrets are literal; its sources stay off here.
    let pipeline = leadrouter::aws::pipeline(store, queue, &|_| None, &sdk_config().await).await.expect("pipeline");
    (pipeline, sqs, urls)
}

use leadrouter::ports::{
    AssignChange, Claim, Delivery as DeliveryRecord, Inserted, LeadChange, LeadPage, LeadQuery, LeadStore, PendingPage,
    StoreError, Updated,
};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A store that answers one call in `every` (at random, as DynamoDB does under load; a fixed
/// period could line up with a stage's calls and fail the same one forever) with a throttling
/// error; everything else goes to the real store.
pub struct Throttled<S> {
    pub inner: S,
    every: usize,
    calls: AtomicUsize,
    pub throttled: AtomicUsize,
}

impl<S> Throttled<S> {
    pub fn new(inner: S, every: usize) -> Throttled<S> {
        Throttled { inner, every, calls: AtomicUsize::new(0), throttled: AtomicUsize::new(0) }
    }

    fn gate(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if rand::random_range(0..self.every) == 0 {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Retryable("ProvisionedThroughputExceededException (injected)".into()));
        }
        Ok(())
    }
}

impl<S: LeadStore> LeadStore for Throttled<S> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.ping().await
    }
    async fn turn(&self, pool: &str) -> Result<u64, StoreError> {
        self.gate()?;
        self.inner.turn(pool).await
    }
    async fn insert(&self, lead: leadrouter::domain::Lead) -> Result<Inserted, StoreError> {
        self.gate()?;
        self.inner.insert(lead).await
    }
    async fn get(&self, id: &leadrouter::domain::LeadId) -> Result<Option<leadrouter::domain::Lead>, StoreError> {
        self.gate()?;
        self.inner.get(id).await
    }
    async fn list(&self, q: LeadQuery) -> Result<LeadPage, StoreError> {
        self.gate()?;
        self.inner.list(q).await
    }
    async fn update<F: LeadChange>(
        &self,
        ids: Vec<leadrouter::domain::LeadId>,
        change: F,
    ) -> Result<Vec<Updated>, StoreError> {
        self.gate()?;
        self.inner.update(ids, change).await
    }
    async fn claim(
        &self,
        lead: &leadrouter::domain::LeadId,
        keys: Vec<String>,
        now: chrono::DateTime<chrono::Utc>,
        stale_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<Claim, StoreError> {
        self.gate()?;
        self.inner.claim(lead, keys, now, stale_before).await
    }
    async fn assign<F: AssignChange>(
        &self,
        pool: &str,
        ids: Vec<leadrouter::domain::LeadId>,
        assign: F,
    ) -> Result<Vec<Updated>, StoreError> {
        self.gate()?;
        self.inner.assign(pool, ids, assign).await
    }
    async fn deliveries(&self, lead: &leadrouter::domain::LeadId) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.gate()?;
        self.inner.deliveries(lead).await
    }
    async fn put_deliveries(&self, d: Vec<DeliveryRecord>) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.put_deliveries(d).await
    }
    async fn value(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.gate()?;
        self.inner.value(key).await
    }
    async fn put_value(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.put_value(key, value).await
    }
    async fn pending(
        &self,
        due_by: chrono::DateTime<chrono::Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<PendingPage, StoreError> {
        self.gate()?;
        self.inner.pending(due_by, after, limit).await
    }
    async fn reps(&self) -> Result<Vec<leadrouter::domain::RepRecord>, StoreError> {
        self.gate()?;
        self.inner.reps().await
    }
    async fn put_rep(&self, rep: leadrouter::domain::RepRecord) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.put_rep(rep).await
    }
    async fn rep_history(&self) -> Result<Vec<leadrouter::domain::RepRecord>, StoreError> {
        self.gate()?;
        self.inner.rep_history().await
    }
    async fn open_count(&self, rep: &str, up_to: u32) -> Result<u32, StoreError> {
        self.gate()?;
        self.inner.open_count(rep, up_to).await
    }
    async fn open_leads(&self, rep: &str) -> Result<Vec<leadrouter::domain::LeadId>, StoreError> {
        self.gate()?;
        self.inner.open_leads(rep).await
    }
    async fn account_owners(
        &self,
        domains: Vec<String>,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<HashMap<String, (leadrouter::domain::LeadId, String)>, StoreError> {
        self.gate()?;
        self.inner.account_owners(domains, since).await
    }
    async fn since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<LeadPage, StoreError> {
        self.gate()?;
        self.inner.since(since, after, limit).await
    }
    async fn facts(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<leadrouter::ports::FactsPage, StoreError> {
        self.gate()?;
        self.inner.facts(from, to, after, limit).await
    }
    async fn person(&self, keys: Vec<String>) -> Result<Vec<leadrouter::domain::LeadId>, StoreError> {
        self.gate()?;
        self.inner.person(keys).await
    }
    async fn forget(&self, lead: &leadrouter::domain::LeadId, keys: Vec<String>) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.forget(lead, keys).await
    }
    async fn idle(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<PendingPage, StoreError> {
        self.gate()?;
        self.inner.idle(before, after, limit).await
    }
    async fn expire(
        &self,
        leads_before: Option<chrono::DateTime<chrono::Utc>>,
        claims_before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<leadrouter::ports::Expired, StoreError> {
        self.gate()?;
        self.inner.expire(leads_before, claims_before, limit).await
    }
}

/// Counts the AWS requests the SDK clients make, by service and operation.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>);

impl RequestCounter {
    pub fn counts(&self) -> std::collections::BTreeMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
    pub fn reset(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "request-counter"
    }

    /// Every attempt on the wire (retries count too), named by its `X-Amz-Target`.
    fn read_before_transmit(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let target = ctx.request().headers().get("x-amz-target").unwrap_or("unknown").to_owned();
        let name = target.replace("DynamoDB_20120810.", "dynamodb.").replace("AmazonSQS.", "sqs.");
        *self.0.lock().unwrap().entry(name).or_default() += 1;
        Ok(())
    }
}

/// Meters DynamoDB capacity by the documented rules, since the emulator does not: each write
/// of an item costs 1 WRU per KB of the larger of its old and new size (2 in a transaction,
/// and a failed condition still costs the write), each global secondary index entry that is
/// put or deleted 1 WRU (a changed index key is both), a consistent read 1 RRU per 4 KB, a
/// query page 1 RRU if consistent and 0.5 if not (pages here are small). It keeps a
/// shadow of every item it saw written, which is the old image of the next write.
#[derive(Debug, Clone, Default)]
pub struct CapacityMeter(Arc<std::sync::Mutex<MeterState>>);

#[derive(Debug, Default)]
struct MeterState {
    items: HashMap<(String, String), serde_json::Map<String, serde_json::Value>>,
    /// Write units by what was written: `item`, `item (transaction)`, `index <name>`.
    wru: std::collections::BTreeMap<String, f64>,
    rru: f64,
}

#[derive(Debug, Clone)]
struct SentBody(String, Vec<u8>);

impl aws_smithy_types::config_bag::Storable for SentBody {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl CapacityMeter {
    pub fn reset(&self) {
        let mut s = self.0.lock().unwrap();
        s.wru.clear();
        s.rru = 0.0;
    }

    /// Write units by what was written.
    pub fn write_units(&self) -> std::collections::BTreeMap<String, f64> {
        self.0.lock().unwrap().wru.clone()
    }

    pub fn read_units(&self) -> f64 {
        self.0.lock().unwrap().rru
    }

    /// The metered size of a stored item, by the key it was written under.
    pub fn item_size(&self, pk: &str, sk: &str) -> Option<usize> {
        self.0.lock().unwrap().items.get(&(pk.to_owned(), sk.to_owned())).map(item_size)
    }
}

fn value_size(v: &serde_json::Value) -> usize {
    let Some((kind, v)) = v.as_object().and_then(|o| o.iter().next()) else { return 0 };
    match (kind.as_str(), v) {
        ("S", serde_json::Value::String(s)) => s.len(),
        // Numbers: about one byte per two significant digits, plus one.
        ("N", serde_json::Value::String(s)) => s.len().div_ceil(2) + 1,
        ("B", serde_json::Value::String(s)) => s.len() * 3 / 4,
        ("BOOL" | "NULL", _) => 1,
        ("SS" | "NS" | "BS", serde_json::Value::Array(a)) => a.iter().map(|x| x.as_str().map_or(0, str::len)).sum(),
        ("L", serde_json::Value::Array(a)) => 3 + a.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        ("M", serde_json::Value::Object(m)) => 3 + m.iter().map(|(k, x)| 1 + k.len() + value_size(x)).sum::<usize>(),
        _ => 0,
    }
}

fn item_size(item: &serde_json::Map<String, serde_json::Value>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

impl MeterState {
    fn key(item: &serde_json::Map<String, serde_json::Value>) -> (String, String) {
        let s = |k: &str| item.get(k).and_then(|v| v.get("S")).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        (s("pk"), s("sk"))
    }

    fn add(&mut self, what: &str, units: f64) {
        *self.wru.entry(what.to_owned()).or_default() += units;
    }

    /// One put of `new`; `applied` false when its condition failed.
    fn put(&mut self, new: serde_json::Map<String, serde_json::Value>, transaction: bool, applied: bool) {
        let key = Self::key(&new);
        let old = self.items.remove(&key);
        let old = old.as_ref();
        let size = item_size(&new).max(old.map_or(0, item_size));
        let units = size.div_ceil(1024).max(1) as f64;
        if transaction {
            self.add("item (transaction)", 2.0 * units);
        } else {
            self.add("item", units);
        }
        if !applied {
            if let Some(old) = old {
                self.items.insert(key, old.clone());
            }
            return;
        }
        let mut index_writes = Vec::new();
        for (index, pk) in leadrouter::adapters::dynamo::INDEXES {
            let entry = |item: Option<&serde_json::Map<String, serde_json::Value>>| {
                let item = item?;
                item.get(pk)?;
                let mut attrs = vec![pk, "seq"];
                attrs.extend(leadrouter::adapters::dynamo::projected(index));
                Some(attrs.iter().map(|a| item.get(*a).cloned()).collect::<Vec<_>>())
            };
            let (before, after) = (entry(old), entry(Some(&new)));
            let writes = match (&before, &after) {
                (None, None) => 0,
                (Some(_), None) | (None, Some(_)) => 1,
                // A changed key (the first two) is a delete and a put; a changed projection a put.
                (Some(b), Some(a)) if b[..2] != a[..2] => 2,
                (Some(b), Some(a)) => usize::from(b != a),
            };
            if writes > 0 {
                index_writes.push((format!("index {index}"), writes as f64));
            }
        }
        for (what, units) in index_writes {
            self.add(&what, units);
        }
        self.items.insert(key, new);
    }

    fn record(&mut self, op: &str, body: &serde_json::Value, ok: bool, conditional_failure: bool) {
        let map = |v: &serde_json::Value| v.as_object().cloned().unwrap_or_default();
        match op {
            "PutItem" if ok || conditional_failure => self.put(map(&body["Item"]), false, ok),
            "TransactWriteItems" => {
                for action in body["TransactItems"].as_array().into_iter().flatten() {
                    if let Some(put) = action.get("Put") {
                        self.put(map(&put["Item"]), true, ok);
                    }
                }
            }
            "GetItem" if ok => {
                let key = Self::key(&map(&body["Key"]));
                let size = self.items.get(&key).map_or(1, item_size);
                let consistent = body["ConsistentRead"].as_bool().unwrap_or(false);
                self.rru += size.div_ceil(4096).max(1) as f64 * if consistent { 1.0 } else { 0.5 };
            }
            // Index entries and delivery records are small: one 4 KB unit per page.
            "Query" if ok => self.rru += if body["ConsistentRead"].as_bool().unwrap_or(false) { 1.0 } else { 0.5 },
            "BatchGetItem" if ok => {
                for keys in body["RequestItems"].as_object().into_iter().flat_map(|t| t.values()) {
                    for key in keys["Keys"].as_array().into_iter().flatten() {
                        let size = self.items.get(&Self::key(&map(key))).map_or(1, item_size);
                        self.rru += size.div_ceil(4096).max(1) as f64 * 0.5;
                    }
                }
            }
            _ => {}
        }
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "capacity-meter"
    }

    fn read_before_transmit(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let target = ctx.request().headers().get("x-amz-target").unwrap_or_default();
        let op = target.strip_prefix("DynamoDB_20120810.").unwrap_or_default().to_owned();
        let body = ctx.request().body().bytes().unwrap_or_default().to_vec();
        cfg.interceptor_state().store_put(SentBody(op, body));
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some(SentBody(op, body)) = cfg.load::<SentBody>().cloned() else { return Ok(()) };
        let status = ctx.response().status().as_u16();
        let ok = status == 200;
        let response = ctx.response().body().bytes().unwrap_or_default();
        let conditional_failure = !ok && String::from_utf8_lossy(response).contains("ConditionalCheckFailed");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        self.0.lock().unwrap().record(&op, &body, ok, conditional_failure);
        Ok(())
    }
}
