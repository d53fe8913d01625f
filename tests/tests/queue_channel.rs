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
    assert!(queue.take(Stage::Dedup, &first));
    sending.await.unwrap().unwrap();
    assert!(queue.holds(Stage::Dedup, &c.lead_id));
    queue.refilled(Stage::Dedup, seen);
    assert_eq!(queue.backlogged(Stage::Dedup), None);
}

/// A lead a stage's worker has taken stays in that stage's hands until the worker is finished
/// with it (or hands it to `retry`): the refill and the sweep do not offer it again meanwhile,
/// and a message sent for it meanwhile waits and is queued once the worker is finished, so two
/// notify batches never send one lead at once.
#[tokio::test]
async fn a_lead_is_worked_on_by_one_worker_task_at_a_time() {
    use leadrouter::adapters::channel::Envelope;
    use leadrouter::domain::LeadId;
    use leadrouter::ports::Queue;
    let (queue, mut rx) = ChannelQueue::with_capacity(4);
    let m = Message::lead(LeadId::new());
    queue.offer(Stage::Notify, vec![m.clone()]).await.unwrap();
    let first = rx.notify.recv().await.unwrap();
    assert!(queue.take(Stage::Notify, &first), "nobody has it: the worker works on it");
    assert!(queue.holds(Stage::Notify, &m.lead_id), "taken and not finished");
    queue.offer(Stage::Notify, vec![m.clone()]).await.unwrap();
    assert!(rx.notify.try_recv().is_err(), "not offered again while the worker has it");
    queue.offer(Stage::Assign, vec![m.clone()]).await.unwrap();
    let other = rx.assign.try_recv().expect("another stage may have it");
    assert!(queue.take(Stage::Assign, &other));
    queue.finished(Stage::Assign, &other.message);

    // Sent (as a stage forwards, without asking) while the worker has it: it waits.
    let kinded = Message { kind: Some(leadrouter::domain::NotificationKind::Assigned), ..m.clone() };
    queue.send(Stage::Notify, vec![kinded.clone()]).await.unwrap();
    let second = rx.notify.recv().await.unwrap();
    assert!(!queue.take(Stage::Notify, &second), "the lead is in a worker's hands: this one waits");
    assert_eq!(queue.in_flight(), 2, "the waiting message is still counted");
    queue.finished(Stage::Notify, &first.message);
    let queued_again = rx.notify.try_recv().expect("queued again once the worker is finished");
    assert_eq!(queued_again.message, kinded);
    assert!(queue.take(Stage::Notify, &queued_again));

    // A retry hands it back to the queue: still held, now as queued.
    queue.retry(Stage::Notify, Envelope { message: queued_again.message.clone(), attempt: 1 });
    assert!(queue.holds(Stage::Notify, &m.lead_id));
    let again = rx.notify.recv().await.unwrap();
    assert_eq!(again.attempt, 1);
    assert!(queue.take(Stage::Notify, &again));
    queue.finished(Stage::Notify, &again.message);
    assert!(!queue.holds(Stage::Notify, &m.lead_id), "finished: the stage lets it go");
    assert_eq!(queue.in_flight(), 0);
    queue.offer(Stage::Notify, vec![m.clone()]).await.unwrap();
    assert!(rx.notify.try_recv().is_ok(), "and it may be offered again");
}
