//! The queue contract against the SQS adapter, on moto server's real SQS protocol.

use leadrouter::adapters::sqs::SqsQueue;
use leadrouter::ports::Message;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_their_stage_intact() {
    let (client, urls) = leadrouter_tests::aws::fresh_queues(None).await;
    let queue = SqsQueue::new(client.clone(), urls.clone());
    leadrouter_tests::queue_contract::messages_reach_their_stage_intact(queue, async |stage, n| {
        let mut out: Vec<Message> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(if n == 0 { 1 } else { 20 });
        while Instant::now() < deadline && (n == 0 || out.len() < n) {
            let r = client.receive_message().queue_url(&urls[&stage]).max_number_of_messages(10).send().await.unwrap();
            for m in r.messages.unwrap_or_default() {
                out.push(serde_json::from_str(m.body().unwrap_or_default()).expect("a message body the adapter wrote"));
            }
        }
        out
    })
    .await;
}
