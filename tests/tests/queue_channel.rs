//! The queue contract against the embedded runtime's in-process channels.

use leadrouter::adapters::channel::ChannelQueue;
use leadrouter::domain::Stage;
use leadrouter::ports::Message;

#[tokio::test]
async fn messages_reach_their_stage_intact() {
    let (queue, mut rx) = ChannelQueue::new();
    leadrouter_tests::queue_contract::messages_reach_their_stage_intact(queue.clone(), async |stage, _n| {
        let r = match stage {
            Stage::Fetch => &mut rx.fetch,
            Stage::Dedup => &mut rx.dedup,
            Stage::Score => &mut rx.score,
            Stage::Assign => &mut rx.assign,
            Stage::Notify => &mut rx.notify,
        };
        let mut out: Vec<Message> = Vec::new();
        while let Ok(e) = r.try_recv() {
            out.push(e.message);
        }
        out
    })
    .await;
    assert_eq!(queue.in_flight(), 28, "every message sent is counted in flight until done");
}

/// A full queue: `offer` leaves the message to the store and says so (`backlogged`), `send`
/// waits for room, and a message already queued is queued once.
#[tokio::test]
async fn a_full_queue_leaves_offers_to_the_store_and_holds_sends_back() {
    use leadrouter::domain::LeadId;
    use leadrouter::ports::Queue;
    let (queue, mut rx) = ChannelQueue::with_capacity(2);
    let (a, b, c) = (Message::lead(LeadId::new()), Message::lead(LeadId::new()), Message::lead(LeadId::new()));
    queue.offer(Stage::Dedup, vec![a.clone(), a.clone(), b.clone()]).await.unwrap();
    assert_eq!(queue.in_flight(), 2, "a message already queued is queued once");
    assert_eq!(queue.backlogged(Stage::Dedup), None);
    queue.offer(Stage::Dedup, vec![c.clone()]).await.unwrap();
    let seen = queue.backlogged(Stage::Dedup).expect("the third was left to the store");
    assert_eq!(queue.in_flight(), 3, "a backlog in the store keeps the runtime from counting itself drained");
    // send waits until the worker takes one.
    let sending = tokio::spawn({
        let q = queue.clone();
        let c = c.clone();
        async move { q.send(Stage::Dedup, vec![c]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!sending.is_finished(), "send waits for room");
    let first = rx.dedup.recv().await.unwrap();
    queue.taken(Stage::Dedup, &first.message);
    sending.await.unwrap().unwrap();
    assert!(queue.holds(&c.lead_id));
    queue.refilled(Stage::Dedup, seen);
    assert_eq!(queue.backlogged(Stage::Dedup), None);
}
