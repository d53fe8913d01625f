//! The `LeadStore` contract: every adapter runs these same tests with the same assertions.
//!
//! An adapter's test file calls `store_contract_tests!(async { make_a_fresh_store() })`.

use chrono::{Duration, Utc};
use leadrouter::domain::{Contact, Email, Lead, LeadId, LeadStatus, NotificationKind, RepRecord, Stage};
use leadrouter::ports::{Claim, Delivery, Inserted, LeadQuery, LeadStore, Updated};
use std::collections::HashSet;
use std::sync::Arc;

pub fn lead(email: &str, source: &str) -> Lead {
    let contact = Contact { email: Some(Email::parse(email).expect("test email")), ..Contact::default() };
    Lead::new(LeadId::new(), source.into(), contact, Utc::now())
}

fn written(u: &Updated) -> &Lead {
    match u {
        Updated::Written(l) => l,
        other => panic!("expected a write, got {other:?}"),
    }
}

pub async fn insert_is_create_once<S: LeadStore>(s: S) {
    let l = lead("a@acme.com", "web");
    assert_eq!(s.insert(l.clone()).await.unwrap(), Inserted::New);
    let mut again = l.clone();
    again.source = "other".into();
    match s.insert(again).await.unwrap() {
        Inserted::Existing(e) => assert_eq!(e.source, "web", "the first write stays"),
        Inserted::New => panic!("a second insert of one id must not create"),
    }
    assert_eq!(s.get(&l.id).await.unwrap().as_ref(), Some(&l));
    assert_eq!(s.get(&LeadId::new()).await.unwrap(), None);
    s.ping().await.unwrap();
}

pub async fn update_is_guarded<S: LeadStore>(s: S) {
    let l = lead("a@acme.com", "web");
    s.insert(l.clone()).await.unwrap();
    let now = Utc::now();
    let r = s
        .update(vec![l.id.clone()], move |x| {
            if x.status != LeadStatus::Received {
                return false;
            }
            x.transition(LeadStatus::Unique, "first", now);
            true
        })
        .await
        .unwrap();
    assert_eq!(written(&r[0]).status, LeadStatus::Unique);
    // The same change again finds the guard false and writes nothing.
    let r = s
        .update(vec![l.id.clone(), LeadId::new()], move |x| {
            if x.status != LeadStatus::Received {
                return false;
            }
            x.transition(LeadStatus::Unique, "again", now);
            true
        })
        .await
        .unwrap();
    assert!(matches!(&r[0], Updated::Unchanged(x) if x.history.len() == 2));
    assert_eq!(r[1], Updated::Missing);
    let stored = s.get(&l.id).await.unwrap().unwrap();
    assert_eq!(stored.history.len(), 2);
}

pub async fn claims_first_wins_within_window<S: LeadStore>(s: S) {
    let now = Utc::now();
    let window = now - Duration::days(90);
    let (a, b, c) = (LeadId::new(), LeadId::new(), LeadId::new());
    let keys = |v: &[&str]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(s.claim(&a, keys(&["email:x@acme.com"]), now, window).await.unwrap(), Claim::Unique);
    // Re-claiming one's own keys is a no-op (a redelivered message).
    assert_eq!(s.claim(&a, keys(&["email:x@acme.com"]), now, window).await.unwrap(), Claim::Unique);
    // b shares the email: taken by a; b's phone is now a's too.
    assert_eq!(
        s.claim(&b, keys(&["email:x@acme.com", "phone:+14155550132"]), now, window).await.unwrap(),
        Claim::Taken { key: "email:x@acme.com".into(), by: a.clone() }
    );
    assert_eq!(
        s.claim(&c, keys(&["phone:+14155550132"]), now, window).await.unwrap(),
        Claim::Taken { key: "phone:+14155550132".into(), by: a.clone() }
    );
    // Past the window the claim is stale and the newcomer owns the key.
    let later = now + Duration::days(91);
    assert_eq!(
        s.claim(&c, keys(&["email:x@acme.com"]), later, later - Duration::days(90)).await.unwrap(),
        Claim::Unique
    );
    assert_eq!(
        s.claim(&b, keys(&["email:x@acme.com"]), later, later - Duration::days(90)).await.unwrap(),
        Claim::Taken { key: "email:x@acme.com".into(), by: c.clone() }
    );
    // A free key before a taken one goes to the lead that was first, not to the newcomer.
    let (d, e) = (LeadId::new(), LeadId::new());
    let stale = later - Duration::days(90);
    assert_eq!(
        s.claim(&d, keys(&["phone:+14155550199", "email:x@acme.com"]), later, stale).await.unwrap(),
        Claim::Taken { key: "email:x@acme.com".into(), by: c.clone() }
    );
    assert_eq!(
        s.claim(&e, keys(&["phone:+14155550199"]), later, stale).await.unwrap(),
        Claim::Taken { key: "phone:+14155550199".into(), by: c.clone() }
    );
}

pub async fn assign_advances_cursor_atomically<S: LeadStore>(s: S) {
    let leads: Vec<Lead> = (0..5).map(|i| lead(&format!("r{i}@acme.com"), "web")).collect();
    for l in &leads {
        s.insert(l.clone()).await.unwrap();
    }
    let skip = leads[1].id.clone();
    let ids: Vec<LeadId> = leads.iter().map(|l| l.id.clone()).collect();
    assert_eq!(s.turn("p").await.unwrap(), 0, "a pool before its first turn");
    let r = s
        .assign("p", ids[..3].to_vec(), move |l, turns| {
            if l.id == skip {
                return false;
            }
            l.owner = Some(format!("turn-{}", turns.cursor));
            turns.cursor += 1;
            true
        })
        .await
        .unwrap();
    assert_eq!(written(&r[0]).owner.as_deref(), Some("turn-0"));
    assert!(matches!(&r[1], Updated::Unchanged(_)), "a declined lead takes no turn");
    assert_eq!(written(&r[2]).owner.as_deref(), Some("turn-1"));
    assert_eq!(s.turn("p").await.unwrap(), 2, "read without moving: two turns taken");
    assert_eq!(s.turn("p").await.unwrap(), 2);
    let r = s
        .assign("p", ids[3..].to_vec(), |l, turns| {
            l.owner = Some(format!("turn-{}", turns.cursor));
            turns.cursor += 1;
            true
        })
        .await
        .unwrap();
    assert_eq!(written(&r[0]).owner.as_deref(), Some("turn-2"));
    assert_eq!(written(&r[1]).owner.as_deref(), Some("turn-3"));
    // Pools have cursors of their own.
    let r = s
        .assign("q", vec![ids[1].clone()], |l, turns| {
            // A lead may pass turns (reps who cannot take it): the cursor moves past them all.
            l.owner = Some(format!("turn-{}", turns.cursor + 2));
            turns.cursor += 3;
            true
        })
        .await
        .unwrap();
    assert_eq!(written(&r[0]).owner.as_deref(), Some("turn-2"));
    assert_eq!(s.get(&ids[4]).await.unwrap().unwrap().owner.as_deref(), Some("turn-3"));
    let r = s
        .assign("q", vec![ids[0].clone()], |l, turns| {
            l.owner = Some(format!("turn-{}", turns.cursor));
            turns.cursor += 1;
            true
        })
        .await
        .unwrap();
    assert_eq!(written(&r[0]).owner.as_deref(), Some("turn-3"));
}

/// Many assigners racing on one pool: every turn is handed out exactly once.
pub async fn concurrent_assigns_never_share_a_turn<S: LeadStore>(s: S) {
    let s = Arc::new(s);
    let leads: Vec<Lead> = (0..40).map(|i| lead(&format!("c{i}@acme.com"), "web")).collect();
    for l in &leads {
        s.insert(l.clone()).await.unwrap();
    }
    let tasks = leads.iter().map(|l| {
        let s = s.clone();
        let id = l.id.clone();
        async move {
            s.assign("hot", vec![id], |l, turns| {
                if l.owner.is_some() {
                    return false;
                }
                l.owner = Some(turns.cursor.to_string());
                turns.cursor += 1;
                true
            })
            .await
            .unwrap()
        }
    });
    futures::future::join_all(tasks).await;
    let mut turns = HashSet::new();
    for l in &leads {
        let owner = s.get(&l.id).await.unwrap().unwrap().owner.expect("every lead got a turn");
        assert!(turns.insert(owner.clone()), "turn {owner} was handed out twice");
    }
    let expected: HashSet<String> = (0..40).map(|t: u64| t.to_string()).collect();
    assert_eq!(turns, expected);
}

pub async fn deliveries_are_recorded_per_target<S: LeadStore>(s: S) {
    let l = lead("d@acme.com", "web");
    s.insert(l.clone()).await.unwrap();
    let mut d = Delivery {
        lead_id: l.id.clone(),
        recipient: "ana".into(),
        kind: NotificationKind::Assigned,
        target: "webhook:http://x".into(),
        delivery_id: "D1".into(),
        attempts: 1,
        first_attempt_at: Some(Utc::now()),
        delivered_at: None,
        last_error: Some("500".into()),
        dead: false,
        parked_since: None,
    };
    s.put_deliveries(vec![d.clone()]).await.unwrap();
    d.attempts = 2;
    d.delivered_at = Some(Utc::now());
    d.last_error = None;
    let mut other = d.clone();
    other.target = "log:".into();
    let mut manager = d.clone();
    manager.recipient = "manager:everyone".into();
    s.put_deliveries(vec![d.clone(), other, manager.clone()]).await.unwrap();
    let all = s.deliveries(&l.id).await.unwrap();
    assert_eq!(all.len(), 3, "one record per recipient, kind and target: {all:?}");
    let hook = all.iter().find(|x| x.target == "webhook:http://x" && x.recipient == "ana").unwrap();
    assert_eq!((hook.attempts, hook.delivered_at.is_some()), (2, true), "replaced, not added");
    // Another kind for the same recipient and target is another record; the others stay.
    manager.kind = NotificationKind::SlaBreached;
    s.put_deliveries(vec![manager]).await.unwrap();
    let all = s.deliveries(&l.id).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.iter().any(|x| x.kind == NotificationKind::SlaBreached && x.recipient == "manager:everyone"));
    assert!(s.deliveries(&LeadId::new()).await.unwrap().is_empty());
}

pub async fn pending_finds_unfinished_leads<S: LeadStore>(s: S) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let l = lead(&format!("p{i}@acme.com"), "web");
        ids.push(l.id.clone());
        s.insert(l).await.unwrap();
    }
    let now = Utc::now();
    s.update(vec![ids[0].clone()], move |l| {
        l.transition(LeadStatus::Unique, "u", now);
        true
    })
    .await
    .unwrap();
    s.update(vec![ids[1].clone()], move |l| {
        l.transition(LeadStatus::Rejected, "spam", now);
        true
    })
    .await
    .unwrap();
    s.update(vec![ids[2].clone()], move |l| {
        l.transition(LeadStatus::Assigned, "a", now);
        l.notify_pending = Some(NotificationKind::Assigned);
        true
    })
    .await
    .unwrap();
    // Waiting for acceptance: 3 within its SLA, 4 past it.
    for (i, due) in [(3, now + chrono::Duration::minutes(15)), (4, now - chrono::Duration::minutes(1))] {
        s.update(vec![ids[i].clone()], move |l| {
            l.transition(LeadStatus::Assigned, "a", now);
            l.owner = Some("ana".into());
            l.sla_due_at = Some(due);
            true
        })
        .await
        .unwrap();
    }
    let all_pending = async |due_by| {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let leadrouter::ports::PendingPage { leads: page, next } = s.pending(due_by, after, 2).await.unwrap();
            assert!(page.len() <= 2);
            seen.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        seen
    };
    let seen = all_pending(now).await;
    // The page says which leads; each lead says which stage it waits for.
    let mut stages = Vec::new();
    for id in &seen {
        stages.push((id.clone(), s.get(id).await.unwrap().and_then(|l| l.pending_stage())));
    }
    let stage_of = |id: &LeadId| stages.iter().find(|(x, _)| x == id).and_then(|(_, st)| *st);
    assert_eq!(stage_of(&ids[0]), Some(Stage::Score));
    assert_eq!(stage_of(&ids[1]), None, "a rejected lead waits for nothing");
    assert_eq!(stage_of(&ids[2]), Some(Stage::Notify));
    assert_eq!(stage_of(&ids[3]), None, "not read before its SLA deadline");
    assert_eq!(stage_of(&ids[4]), Some(Stage::Assign), "past its SLA deadline");
    assert_eq!(stage_of(&ids[6]), Some(Stage::Dedup));
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.first(), Some(&ids[0]), "oldest first");
    let later = all_pending(now + chrono::Duration::minutes(16)).await;
    assert_eq!(later.len(), 6);
    assert!(later.contains(&ids[3]), "due once the deadline passed");
}

pub async fn list_filters_and_pages_newest_first<S: LeadStore>(s: S) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut l = lead(&format!("l{i}@acme.com"), if i % 2 == 0 { "web" } else { "meta" });
        if i == 3 {
            l.owner = Some("ana".into());
            l.transition(LeadStatus::Assigned, "a", Utc::now());
        }
        ids.push(l.id.clone());
        s.insert(l).await.unwrap();
    }
    let page = s.list(LeadQuery { limit: 2, ..LeadQuery::default() }).await.unwrap();
    assert_eq!(page.items.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), vec![ids[4].clone(), ids[3].clone()]);
    let next = s.list(LeadQuery { limit: 2, cursor: page.next_cursor.clone(), ..LeadQuery::default() }).await.unwrap();
    assert_eq!(next.items.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), vec![ids[2].clone(), ids[1].clone()]);
    let last = s.list(LeadQuery { limit: 2, cursor: next.next_cursor.clone(), ..LeadQuery::default() }).await.unwrap();
    assert_eq!(last.items.len(), 1);
    assert_eq!(last.next_cursor, None);
    let web = s.list(LeadQuery { source: Some("web".into()), limit: 50, ..LeadQuery::default() }).await.unwrap();
    assert_eq!(web.items.len(), 3);
    let owned = s.list(LeadQuery { owner: Some("ana".into()), limit: 50, ..LeadQuery::default() }).await.unwrap();
    assert_eq!(owned.items.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), vec![ids[3].clone()]);
    let assigned =
        s.list(LeadQuery { status: Some(LeadStatus::Assigned), limit: 50, ..LeadQuery::default() }).await.unwrap();
    assert_eq!(assigned.items.len(), 1);
    // An assignment whose owner is still being told is listed as assigned, once.
    s.update(vec![ids[1].clone()], |l| {
        l.owner = Some("bo".into());
        l.transition(LeadStatus::Assigned, "b", Utc::now());
        l.notify_pending = Some(leadrouter::domain::NotificationKind::Assigned);
        true
    })
    .await
    .unwrap();
    let assigned =
        s.list(LeadQuery { status: Some(LeadStatus::Assigned), limit: 50, ..LeadQuery::default() }).await.unwrap();
    assert_eq!(assigned.items.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), vec![ids[3].clone(), ids[1].clone()]);
    s.update(vec![ids[1].clone()], |l| {
        l.owner = None;
        l.notify_pending = None;
        l.transition(LeadStatus::Received, "back", Utc::now());
        true
    })
    .await
    .unwrap();
    // Leads on their way to a rep are listed too (the AWS store reads them from `pending`).
    let received =
        s.list(LeadQuery { status: Some(LeadStatus::Received), limit: 3, ..LeadQuery::default() }).await.unwrap();
    let want: Vec<LeadId> = [4, 2, 1].iter().map(|i| ids[*i].clone()).collect();
    assert_eq!(received.items.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), want, "newest first");
    let rest = s
        .list(LeadQuery {
            status: Some(LeadStatus::Received),
            limit: 3,
            cursor: received.next_cursor.clone(),
            ..LeadQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), vec![ids[0].clone()]);
    assert!(rest.next_cursor.is_none());
}

/// Generates one `#[tokio::test]` per contract test, each with a fresh store from `$make`.
/// Roster changes are kept whole and replaced whole.
/// The console's filters: pool, a search over email, name and company, and the leads changed
/// since a time (polling).
pub async fn list_searches_and_finds_what_changed<S: LeadStore>(s: S) {
    let t0 = Utc::now();
    let mut ids = Vec::new();
    for (i, (email, company, pool)) in
        [("jo@acme.com", "Acme Corp", "emea"), ("ann@globex.com", "Globex", "na"), ("zed@initech.io", "Initech", "na")]
            .into_iter()
            .enumerate()
    {
        let mut l = lead(email, "web");
        l.received_at = t0 - Duration::hours(3) + Duration::minutes(i as i64);
        l.history[0].at = l.received_at;
        l.contact.company = Some(company.into());
        l.contact.first_name = Some(["Jo", "Ann", "Zed"][i].into());
        l.contact.last_name = Some("Park".into());
        l.pool = Some(pool.into());
        ids.push(l.id.clone());
        s.insert(l).await.unwrap();
    }
    let ids_of = |p: &leadrouter::ports::LeadPage| p.items.iter().map(|l| l.id.clone()).collect::<Vec<_>>();
    let q = |q: &str| LeadQuery { q: Some(q.into()), limit: 50, ..LeadQuery::default() };
    assert_eq!(ids_of(&s.list(q("GLOBEX")).await.unwrap()), vec![ids[1].clone()], "company, any case");
    assert_eq!(ids_of(&s.list(q("zed@init")).await.unwrap()), vec![ids[2].clone()], "email");
    assert_eq!(ids_of(&s.list(q("ann park")).await.unwrap()), vec![ids[1].clone()], "first and last name");
    assert_eq!(s.list(q("park")).await.unwrap().items.len(), 3);
    assert!(s.list(q("nobody")).await.unwrap().items.is_empty());
    let na = s.list(LeadQuery { pool: Some("na".into()), limit: 50, ..LeadQuery::default() }).await.unwrap();
    assert_eq!(ids_of(&na), vec![ids[2].clone(), ids[1].clone()]);
    let both = LeadQuery { pool: Some("na".into()), q: Some("ann".into()), limit: 50, ..LeadQuery::default() };
    assert_eq!(ids_of(&s.list(both).await.unwrap()), vec![ids[1].clone()]);

    // Nothing changed in the last hour; then one lead changes and only it is found.
    let since = |t| LeadQuery { updated_since: Some(t), limit: 50, ..LeadQuery::default() };
    assert!(s.list(since(t0 - Duration::hours(1))).await.unwrap().items.is_empty());
    assert_eq!(s.list(since(t0 - Duration::hours(4))).await.unwrap().items.len(), 3);
    s.update(vec![ids[0].clone()], move |l| {
        l.transition(LeadStatus::Unique, "unique", t0);
        true
    })
    .await
    .unwrap();
    assert_eq!(ids_of(&s.list(since(t0 - Duration::hours(1))).await.unwrap()), vec![ids[0].clone()]);
    assert_eq!(ids_of(&s.list(since(t0)).await.unwrap()), vec![ids[0].clone()], "at or after");
    assert!(s.list(since(t0 + Duration::milliseconds(1))).await.unwrap().items.is_empty());
    // Beyond the last two days, the AWS store reads every lead; the answer is the same.
    assert_eq!(s.list(since(t0 - Duration::days(5))).await.unwrap().items.len(), 3);
}

pub async fn reps_are_kept<S: LeadStore>(s: S) {
    assert!(s.reps().await.unwrap().is_empty());
    let at = Utc::now();
    let rec = |id: &str, name: &str| RepRecord {
        id: id.into(),
        name: name.into(),
        email: Some(format!("{id}@example.com")),
        notify: vec!["log:".into()],
        weight: Some(2),
        active: true,
        timezone: Some("Europe/Berlin".into()),
        working_hours: Some("Mon-Fri 09:00-17:00".into()),
        out_of_office: vec!["2026-12-24/2027-01-02".into()],
        max_open_leads: Some(5),
        crm_owner: leadrouter::domain::CrmOwner { hubspot: Some("41629779".into()), salesforce: None },
        pools: Some(vec!["everyone".into()]),
        open_leads: None,
        removed: false,
        updated_at: Some(at),
        updated_by: Some("Maria Chen".into()),
    };
    let later = |r: RepRecord, secs: i64| RepRecord { updated_at: Some(at + Duration::seconds(secs)), ..r };
    let zoe_gone = later(RepRecord { removed: true, ..rec("zoe", "Zoe Z") }, 2);
    s.put_rep(rec("zoe", "Zoe")).await.unwrap();
    s.put_rep(later(rec("amy", "Amy"), 1)).await.unwrap();
    s.put_rep(zoe_gone.clone()).await.unwrap();
    let mut reps = s.reps().await.unwrap();
    reps.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(reps, vec![later(rec("amy", "Amy"), 1), zoe_gone.clone()]);
    // Every change is kept, in order, for replay's roster in force at each decision.
    assert_eq!(s.rep_history().await.unwrap(), vec![rec("zoe", "Zoe"), later(rec("amy", "Amy"), 1), zoe_gone]);
}

/// Open leads per owner (capacity), owned accounts (stickiness) and funnel facts.
pub async fn routing_reads<S: LeadStore>(s: S) {
    let now = Utc::now();
    let owner_of = |domain: &str, since| {
        let s = &s;
        let domain = domain.to_owned();
        async move { s.account_owners(vec![domain.clone(), "nobody-owns.com".into()], since).await.unwrap().remove(&domain) }
    };
    let mut a = lead("jo@acme-widgets.com", "web");
    a.received_at = now - Duration::days(2);
    let mut b = lead("kim@acme-widgets.com", "meta");
    b.received_at = now - Duration::days(1);
    let mut c = lead("lu@gmail.com", "web");
    c.received_at = now - Duration::hours(1);
    let d = lead("mo@other-co.com", "web");
    // Unassigned: resting (listed by status) and waiting for a rep at once, counted once.
    let mut e = lead("ed@else-co.com", "web");
    e.received_at = now - Duration::minutes(90);
    e.transition(LeadStatus::Unassigned, "nobody", now);
    for l in [&a, &b, &e, &c, &d] {
        s.insert(l.clone()).await.unwrap();
    }
    assert_eq!(owner_of("acme-widgets.com", now - Duration::days(30)).await, None, "nobody owns it yet");
    let give = |owner: &'static str, status: LeadStatus| {
        move |l: &mut Lead| {
            l.grade = Some("B".into());
            l.give_to("everyone", owner.into(), "test".into(), NotificationKind::Assigned, Utc::now());
            if status != LeadStatus::Assigned {
                l.accepted_at = Some(Utc::now());
                l.transition(status, "test", Utc::now());
            }
            true
        }
    };
    s.update(vec![a.id.clone()], give("ana", LeadStatus::Won)).await.unwrap();
    s.update(vec![b.id.clone()], give("ben", LeadStatus::Accepted)).await.unwrap();
    s.update(vec![c.id.clone()], give("ben", LeadStatus::Assigned)).await.unwrap();
    let mut open = s.open_leads("ben").await.unwrap();
    open.sort();
    let mut want = vec![b.id.clone(), c.id.clone()];
    want.sort();
    assert_eq!(open, want, "accepted and assigned leads are open");
    assert!(s.open_leads("ana").await.unwrap().is_empty(), "a won lead is closed");
    assert_eq!(s.open_count("ben", 40).await.unwrap(), 2);
    assert_eq!(s.open_count("ben", 1).await.unwrap(), 1, "counted no further than the cap");
    assert_eq!(s.open_count("ana", 40).await.unwrap(), 0);
    // Given to someone else while open: it counts for the new owner only.
    s.update(vec![c.id.clone()], |l: &mut Lead| {
        l.give_to("everyone", "ana".into(), "sla".into(), NotificationKind::SlaReassigned, Utc::now());
        true
    })
    .await
    .unwrap();
    assert_eq!((s.open_count("ben", 40).await.unwrap(), s.open_count("ana", 40).await.unwrap()), (1, 1));
    assert_eq!(
        owner_of("acme-widgets.com", now - Duration::days(30)).await,
        Some((b.id.clone(), "ben".into())),
        "the newest owned lead of the account"
    );
    assert_eq!(owner_of("acme-widgets.com", now - Duration::hours(2)).await, None, "outside the window");
    assert_eq!(owner_of("gmail.com", now - Duration::days(30)).await, None, "free mail is no account");
    // Facts of leads received in [from, to), across pages.
    let mut facts = Vec::new();
    let mut after = None;
    loop {
        let page = s.facts(now - Duration::days(3), now - Duration::minutes(30), after, 1).await.unwrap();
        facts.extend(page.facts);
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    facts.sort_by_key(|f| f.received_at);
    assert_eq!(facts.len(), 4, "{facts:?}");
    assert_eq!(facts[0].status, LeadStatus::Won);
    assert_eq!(facts[0].owner.as_deref(), Some("ana"));
    assert_eq!(facts[0].grade.as_deref(), Some("B"));
    assert!(facts[0].first_assigned_at.is_some() && facts[0].accepted_at.is_some());
    assert_eq!(facts[1].source, "meta");
    assert_eq!(facts[2].status, LeadStatus::Unassigned);
    assert_eq!(facts[3].accepted_at, None);
    assert_eq!((facts[0].received_at - a.received_at).num_milliseconds().abs(), 0);
    // Whole leads since a time, oldest first, across pages.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.since(now - Duration::days(1) - Duration::minutes(1), after, 2).await.unwrap();
        seen.extend(page.items.into_iter().map(|l| l.id));
        match page.next_cursor {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, vec![b.id.clone(), e.id.clone(), c.id.clone(), d.id.clone()]);
}

/// Erasure and retention: the store remembers every lead that had an identity key (the
/// holder, a duplicate that matched it, a holder whose stale claim a later lead took) until
/// each is forgotten; an erased lead keeps its anonymous facts; idle leads are found by their
/// last activity; expire drops stale claims (and on SQLite, erased leads past the cutoff).
pub async fn a_person_is_found_and_forgotten<S: LeadStore>(s: S) {
    let now = Utc::now();
    let window = now - Duration::days(90);
    let key = |k: &str| vec![k.to_string()];
    let mut first = lead("jo@acme.com", "web");
    first.received_at = now - Duration::days(400);
    first.history[0].at = first.received_at;
    let (dup, later, stranger) = (lead("jo@acme.com", "web"), lead("jo@acme.com", "web"), lead("x@other.com", "web"));
    for l in [&first, &dup, &later, &stranger] {
        s.insert(l.clone()).await.unwrap();
    }
    let long_ago = now - Duration::days(400);
    assert_eq!(
        s.claim(&first.id, key("email:jo@acme.com"), long_ago, long_ago - Duration::days(90)).await.unwrap(),
        Claim::Unique
    );
    // A year later the claim is stale: `later` takes it; `first` is still this person's lead.
    assert_eq!(s.claim(&later.id, key("email:jo@acme.com"), now, window).await.unwrap(), Claim::Unique);
    assert_eq!(
        s.claim(&dup.id, key("email:jo@acme.com"), now, window).await.unwrap(),
        Claim::Taken { key: "email:jo@acme.com".into(), by: later.id.clone() }
    );
    assert_eq!(s.claim(&stranger.id, key("email:x@other.com"), now, window).await.unwrap(), Claim::Unique);
    let mut expected = vec![first.id.clone(), dup.id.clone(), later.id.clone()];
    expected.sort();
    assert_eq!(s.person(key("email:jo@acme.com")).await.unwrap(), expected);
    assert_eq!(s.person(key("email:nobody@acme.com")).await.unwrap(), Vec::<LeadId>::new());

    // Idle: only `first` has had no activity for a year.
    let before = now - Duration::days(365);
    let mut idle = Vec::new();
    let mut after = None;
    loop {
        let page = s.idle(before, after, 2).await.unwrap();
        idle.extend(page.leads);
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(idle, vec![first.id.clone()]);

    // Erase `first` and forget its key: the others keep theirs, and the claim stays `later`'s.
    let r = s.update(vec![first.id.clone()], move |l| l.erase_personal_data("retention", now)).await.unwrap();
    let erased = written(&r[0]).clone();
    assert_eq!(erased.contact.email, None);
    assert_eq!(erased.source, "web");
    s.forget(&first.id, key("email:jo@acme.com")).await.unwrap();
    let mut left = vec![dup.id.clone(), later.id.clone()];
    left.sort();
    assert_eq!(s.person(key("email:jo@acme.com")).await.unwrap(), left);
    assert!(s.idle(before, None, 10).await.unwrap().leads.is_empty(), "an erased lead is not idle again");
    let fourth = LeadId::new();
    assert!(
        matches!(s.claim(&fourth, key("email:jo@acme.com"), now, window).await.unwrap(), Claim::Taken { by, .. } if by == later.id),
        "forgetting one lead's key leaves the holder's claim"
    );
    // Forgetting every lead of the person: a later lead with the key is new.
    for id in [&dup.id, &later.id, &fourth] {
        s.forget(id, key("email:jo@acme.com")).await.unwrap();
    }
    assert!(s.person(key("email:jo@acme.com")).await.unwrap().is_empty());
    assert_eq!(s.claim(&LeadId::new(), key("email:jo@acme.com"), now, window).await.unwrap(), Claim::Unique);
    assert_eq!(s.person(key("email:x@other.com")).await.unwrap(), vec![stranger.id.clone()]);

    // Expire: nothing is lost that is not due (the erased lead is idle since 400 days).
    let e = s.expire(Some(now - Duration::days(500)), window, 100).await.unwrap();
    assert_eq!(e.leads, 0);
    assert!(s.get(&first.id).await.unwrap().is_some());
}

/// Named values (a CRM record's lead, the read-back mark): absent until set, replaced by a
/// later set, one name never another's.
pub async fn values_are_kept_by_name<S: LeadStore>(s: S) {
    assert_eq!(s.value("crm:hubspot:1001").await.unwrap(), None);
    s.put_value("crm:hubspot:1001", "01JLEAD0000000000000000001").await.unwrap();
    s.put_value("crm:hubspot:1002", "01JLEAD0000000000000000002").await.unwrap();
    assert_eq!(s.value("crm:hubspot:1001").await.unwrap().as_deref(), Some("01JLEAD0000000000000000001"));
    s.put_value("crm:hubspot:1001", "01JLEAD0000000000000000003").await.unwrap();
    assert_eq!(s.value("crm:hubspot:1001").await.unwrap().as_deref(), Some("01JLEAD0000000000000000003"));
    assert_eq!(s.value("crm:hubspot:1002").await.unwrap().as_deref(), Some("01JLEAD0000000000000000002"));
    assert_eq!(s.value("crm:hubspot:100").await.unwrap(), None);
}

#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@each $make;
            insert_is_create_once, update_is_guarded, claims_first_wins_within_window,
            assign_advances_cursor_atomically, concurrent_assigns_never_share_a_turn,
            deliveries_are_recorded_per_target, pending_finds_unfinished_leads,
            list_filters_and_pages_newest_first, list_searches_and_finds_what_changed, reps_are_kept, routing_reads,
            a_person_is_found_and_forgotten, values_are_kept_by_name);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $make.await;
                $crate::contract::$name(store).await;
            }
        )*
    };
}

/// A search that reads a bounded amount per page (the store configured small by the caller):
/// following `next_cursor` finds every match once, newest first, over more than one page. The
/// pages read, and how many of them were empty with a cursor.
pub async fn a_bounded_search_pages_to_every_match<S: LeadStore>(s: S) -> (usize, usize) {
    let mut matching = Vec::new();
    for i in 1..=10 {
        let mut l = lead(&format!("lead{i}@example.com"), "web");
        l.received_at = Utc::now() - Duration::minutes(20 - i);
        l.history[0].at = l.received_at;
        let needle = i == 1 || i == 8;
        l.contact.company = Some(if needle { "Needle Inc".into() } else { "Hay Ltd".into() });
        if needle {
            matching.insert(0, l.id.clone());
        }
        s.insert(l).await.unwrap();
    }
    let search =
        |cursor: Option<String>| LeadQuery { q: Some("needle".into()), cursor, limit: 50, ..LeadQuery::default() };
    let (mut found, mut pages, mut short, mut cursor) = (Vec::new(), 0, 0, None);
    loop {
        let page = s.list(search(cursor)).await.unwrap();
        pages += 1;
        if page.items.is_empty() && page.next_cursor.is_some() {
            short += 1;
        }
        found.extend(page.items.into_iter().map(|l| l.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 20, "the cursors never ended");
    }
    assert_eq!(found, matching, "every match, newest first, once");
    assert!(pages > 1, "the search was cut into pages");
    (pages, short)
}
