//! The `Queue` contract: every adapter runs these same tests with the same assertions. A test
//! file provides the queue and a way to take what reached a stage (the embedded runtime's
//! channel receivers, or SQS ReceiveMessage).

use leadrouter::domain::{LeadId, NotificationKind, Stage};
use leadrouter::ports::{Message, Queue};
use std::collections::HashSet;

/// Messages reach exactly the stage they were sent to, intact, however many are sent at once
/// (SQS takes ten per request).
pub async fn messages_reach_their_stage_intact<Q: Queue>(
    q: Q,
    mut take: impl AsyncFnMut(Stage, usize) -> Vec<Message>,
) {
    let notify: Vec<Message> = (0..25)
        .map(|i| Message {
            lead_id: LeadId::new(),
            kind: Some(if i % 2 == 0 { NotificationKind::Assigned } else { NotificationKind::ReEngaged }),
            unique_at: None,
        })
        .collect();
    // Dedup's finding travels with the message, to the millisecond.
    let found = chrono::DateTime::from_timestamp_millis(1_790_000_000_123);
    let dedup: Vec<Message> =
        (0..3).map(|i| Message { unique_at: found.filter(|_| i > 0), ..Message::lead(LeadId::new()) }).collect();
    q.send(Stage::Notify, notify.clone()).await.expect("send to notify");
    q.send(Stage::Dedup, dedup.clone()).await.expect("send to dedup");
    q.send(Stage::Score, Vec::new()).await.expect("an empty send is fine");
    let got: HashSet<Message> = take(Stage::Notify, 25).await.into_iter().collect();
    assert_eq!(got, notify.into_iter().collect::<HashSet<_>>(), "notify got exactly what was sent to it");
    let got: HashSet<Message> = take(Stage::Dedup, 3).await.into_iter().collect();
    assert_eq!(got, dedup.into_iter().collect::<HashSet<_>>());
    assert!(take(Stage::Score, 0).await.is_empty(), "nothing reached a stage nobody sent to");
}
