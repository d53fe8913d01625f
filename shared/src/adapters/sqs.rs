//! The AWS `Queue`: one SQS queue per stage boundary (each with its dead-letter queue, declared
//! in the SAM template). The batch handler the stage Lambdas run is `aws::handle_batch`.

use crate::domain::Stage;
use crate::ports::{Message, Queue, QueueError};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use std::collections::HashMap;

/// SendMessageBatch takes at most ten entries.
const SQS_BATCH: usize = 10;

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    urls: HashMap<Stage, String>,
}

impl SqsQueue {
    pub fn new(client: Client, urls: HashMap<Stage, String>) -> SqsQueue {
        SqsQueue { client, urls }
    }

    /// Queue URLs from `LEADROUTER_QUEUE_<STAGE>` (`..._FETCH`, `..._DEDUP`, …), as the SAM
    /// template sets them.
    pub fn urls_from_env(env: impl Fn(&str) -> Option<String>) -> Result<HashMap<Stage, String>, String> {
        let mut urls = HashMap::new();
        for stage in Stage::ALL {
            let var = format!("LEADROUTER_QUEUE_{}", stage.as_str().to_ascii_uppercase());
            let url = env(&var).ok_or_else(|| format!("{var} is not set"))?;
            urls.insert(stage, url);
        }
        Ok(urls)
    }
}

impl Queue for SqsQueue {
    /// Into the stage queue's own dead-letter queue, named by its redrive policy (as the SAM
    /// template declares it), with the reason as the `reason` message attribute.
    async fn dead_letter(&self, stage: Stage, message: &Message, reason: &str) -> Result<(), QueueError> {
        use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName as A};
        let url =
            self.urls.get(&stage).ok_or_else(|| QueueError(format!("no queue for stage {}", stage.as_str()).into()))?;
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::RedrivePolicy)
            .send()
            .await
            .map_err(|e| QueueError(Box::new(e)))?;
        let policy = attrs
            .attributes()
            .and_then(|a| a.get(&A::RedrivePolicy))
            .ok_or_else(|| QueueError(format!("the {} queue has no dead-letter queue", stage.as_str()).into()))?;
        let arn = serde_json::from_str::<serde_json::Value>(policy)
            .ok()
            .and_then(|v| v["deadLetterTargetArn"].as_str().map(str::to_owned))
            .ok_or_else(|| QueueError(format!("unreadable redrive policy: {policy}").into()))?;
        // arn:aws:sqs:<region>:<account>:<name>
        let parts: Vec<&str> = arn.split(':').collect();
        let (Some(account), Some(name)) = (parts.get(4), parts.get(5)) else {
            return Err(QueueError(format!("unreadable dead-letter queue ARN: {arn}").into()));
        };
        let dlq = self
            .client
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(|e| QueueError(Box::new(e)))?;
        let body = serde_json::to_string(message).map_err(|e| QueueError(Box::new(e)))?;
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| QueueError(Box::new(e)))?;
        self.client
            .send_message()
            .queue_url(dlq.queue_url().unwrap_or_default())
            .message_body(body)
            .message_attributes("reason", reason)
            .send()
            .await
            .map_err(|e| QueueError(Box::new(e)))?;
        Ok(())
    }

    async fn backlog(&self, stage: Stage) -> Result<usize, QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let url =
            self.urls.get(&stage).ok_or_else(|| QueueError(format!("no queue for stage {}", stage.as_str()).into()))?;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| QueueError(Box::new(e)))?;
        let attrs = out.attributes.unwrap_or_default();
        let count = |a: &A| attrs.get(a).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        Ok(count(&A::ApproximateNumberOfMessages) + count(&A::ApproximateNumberOfMessagesNotVisible))
    }

    async fn send(&self, stage: Stage, messages: Vec<Message>) -> Result<(), QueueError> {
        let url =
            self.urls.get(&stage).ok_or_else(|| QueueError(format!("no queue for stage {}", stage.as_str()).into()))?;
        for chunk in messages.chunks(SQS_BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, m) in chunk.iter().enumerate() {
                let body = serde_json::to_string(m).map_err(|e| QueueError(Box::new(e)))?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| QueueError(Box::new(e)))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError(Box::new(e)))?;
            if !out.failed().is_empty() {
                let codes: Vec<&str> = out.failed().iter().map(|f| f.code()).collect();
                return Err(QueueError(format!("SQS refused {} messages: {}", codes.len(), codes.join(", ")).into()));
            }
        }
        Ok(())
    }
}
