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
