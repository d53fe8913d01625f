//! A stage error keeps its type end to end: a record no retry can read (corrupt) goes to the
//! dead-letter path at once with its reason, without failing the leads batched with it, while
//! throttling and conflicts are retried. On the embedded runtime (SQLite) and through the AWS
//! stage handlers into the stage's real dead-letter queue (SQS and DynamoDB on the emulator).

use leadrouter::domain::{LeadId, Stage};
use leadrouter::ports::{LeadStore, Message, Queue};
use leadrouter_tests::{Receiver, TestApp, TestClock, routing_doc};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

fn message(id: &LeadId) -> Message {
    Message { lead_id: id.clone(), kind: None, unique_at: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_lead_is_set_aside_at_once_and_its_batch_goes_on_sqlite() {
    let app = TestApp::spawn_custom(
        |r, g| leadrouter_tests::routing_doc_with_graph(r, 65536, g),
        Arc::new(TestClock::default()),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let r = app.post_form(&[("email", &format!("dl{i}@corrupt-co.com"))]).await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        ids.push(LeadId::parse(v["lead_id"].as_str().unwrap()).unwrap());
    }
    app.settle().await;
    let (bad, good) = (&ids[0], &ids[1]);
    // The bad lead's record is made unreadable behind the store's back.
    let db = rusqlite::Connection::open(app.dir.path().join("leads.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let changed = db.execute("UPDATE leads SET doc = 'not a lead' WHERE id = ?1", [bad.as_str()]).unwrap();
    assert_eq!(changed, 1);
    let pipeline = &app.runtime.pipeline;
    assert!(matches!(pipeline.store.get(bad).await, Err(e) if !e.is_retryable()));
    // One batch with both: the shared write fails for the bad record; the good lead goes on.
    let results = pipeline.run(Stage::Score, vec![message(bad), message(good)]).await;
    let bad_result = results[0].as_ref().expect_err("the corrupt lead fails");
    assert!(!bad_result.is_retryable(), "{bad_result}");
    assert!(bad_result.to_string().contains("unreadable"), "{bad_result}");
    assert!(results[1].is_ok(), "the good lead of the batch is not failed with it: {:?}", results[1]);
    // Through the worker: set aside once, not retried (the runtime settles at once).
    pipeline.queue.offer(Stage::Score, vec![message(bad)]).await.unwrap();
    app.settle().await;
    let dead = pipeline.queue.dead_letters(Stage::Score);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(&dead[0].0, bad);
    assert!(dead[0].1.contains("unreadable"), "{}", dead[0].1);
    // Offered again (the sweep, a refill), it is left alone.
    pipeline.queue.offer(Stage::Score, vec![message(bad)]).await.unwrap();
    assert!(pipeline.queue.holds(Stage::Score, bad));
    app.settle().await;
    // The rest of the pipeline still routes.
    let r = app.post_form(&[("email", "after@corrupt-co.com")]).await;
    let v: Value = r.json().await.unwrap();
    app.wait_status(v["lead_id"].as_str().unwrap(), &["notified"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_lead_goes_to_the_stages_dead_letter_queue_at_once_on_aws() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_sqs::types::QueueAttributeName as A;
    use leadrouter_tests::aws::{Delivery, aws_pipeline, drain_queues};
    let receiver = Receiver::start().await;
    let (pipeline, sqs, urls) = aws_pipeline(&routing_doc(&receiver, 65536)).await;
    let pipeline = Arc::new(pipeline);
    let now = chrono::Utc::now();
    let mut ids = Vec::new();
    for i in 0..2 {
        let contact = leadrouter::domain::Contact {
            email: leadrouter::domain::Email::parse(&format!("dl{i}@corrupt-aws.com")).ok(),
            ..Default::default()
        };
        let lead = leadrouter::domain::Lead::new(LeadId::new(), "web".into(), contact, now);
        pipeline.store.insert(lead.clone()).await.unwrap();
        ids.push(lead.id);
    }
    let (bad, good) = (&ids[0], &ids[1]);
    // The bad lead's document is replaced with bytes that do not inflate.
    pipeline
        .store
        .client()
        .update_item()
        .table_name(pipeline.store.table())
        .key("pk", AttributeValue::S(format!("LEAD#{bad}")))
        .key("sk", AttributeValue::S("A".into()))
        .update_expression("SET doc = :d")
        .expression_attribute_values(
            ":d",
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(b"garbage".to_vec())),
        )
        .send()
        .await
        .unwrap();
    pipeline.queue.send(Stage::Dedup, vec![message(bad), message(good)]).await.unwrap();
    let invocations = drain_queues(&pipeline, &sqs, &urls, Delivery { twice: false, shuffle: true }).await;
    assert!(invocations < 10, "the corrupt lead was not retried over and over: {invocations} invocations");
    assert_eq!(pipeline.store.get(good).await.unwrap().unwrap().status.as_str(), "notified");
    // In the dedup queue's own dead-letter queue, with why, after one receive.
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&urls[&Stage::Dedup])
        .attribute_names(A::RedrivePolicy)
        .send()
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(attrs.attributes().unwrap().get(&A::RedrivePolicy).unwrap()).unwrap();
    let dlq_name = policy["deadLetterTargetArn"].as_str().unwrap().rsplit(':').next().unwrap().to_owned();
    let dlq = sqs.get_queue_url().queue_name(dlq_name).send().await.unwrap();
    let got = sqs
        .receive_message()
        .queue_url(dlq.queue_url().unwrap())
        .message_attribute_names("All")
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let dead = got.messages();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let m: Message = serde_json::from_str(dead[0].body().unwrap()).unwrap();
    assert_eq!(&m.lead_id, bad);
    let reason = dead[0].message_attributes().and_then(|a| a.get("reason")).and_then(|v| v.string_value()).unwrap();
    assert!(reason.contains("unreadable"), "{reason}");
}
