//! Personal data with a lifecycle: erasure on request (`POST /v1/erasures`, GDPR Art. 17,
//! CCPA) and retention (`[retention]`), run by the sweep. Both keep the anonymous facts the
//! funnel reads and write why into the lead's history.

use super::{Pipeline, StageError};
use crate::domain::identity::identity_keys;
use crate::domain::{Lead, LeadId, NotificationKind};
use crate::ports::{LeadStore, Notifier, Queue, StoreError, Updated};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// What an erasure request did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Erasure {
    /// Leads whose personal data is erased now.
    #[schema(value_type = Vec<String>)]
    pub erased: Vec<LeadId>,
    /// Leads still being routed: erased as soon as they settle.
    #[schema(value_type = Vec<String>)]
    pub pending: Vec<LeadId>,
}

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Retained {
    /// Leads whose personal data was erased for want of activity.
    pub erased: usize,
    /// Leads deleted (`delete_after_days`).
    pub deleted: usize,
    /// Identity claims past the dedup window dropped.
    pub claims: usize,
}

/// How many rounds of "leads sharing the keys of the leads found" an erasure follows: a
/// person's leads are linked by their email, phone and source ids, one hop per round.
const PERSON_ROUNDS: usize = 4;
const PAGE: usize = 500;
/// Leads erased in one write.
const ERASE_SLICE: usize = 50;
/// A CRM delivery's last error once its lead's personal data is erased.
const SCRUBBED: &str = "the CRM's answer was erased with the lead's personal data";

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// Erases the personal data of the person named by `keys` (identity keys: `email:…`,
    /// `phone:…`) and `leads`: every lead sharing an identity key with them, followed from
    /// lead to lead. A lead still being routed is marked, and erased when it settles.
    pub async fn erase_person(&self, keys: Vec<String>, leads: Vec<LeadId>) -> Result<Erasure, StoreError> {
        let fold = self.settings.dedup.fold_gmail;
        let mut keys: BTreeSet<String> = keys.into_iter().collect();
        let mut asked: BTreeSet<String> = BTreeSet::new();
        let mut found: std::collections::BTreeMap<LeadId, Lead> = Default::default();
        let mut to_load: BTreeSet<LeadId> = leads.into_iter().collect();
        for _ in 0..PERSON_ROUNDS {
            let fresh: Vec<String> = keys.difference(&asked).cloned().collect();
            asked.extend(fresh.iter().cloned());
            if !fresh.is_empty() {
                to_load.extend(self.store.person(fresh).await?);
            }
            to_load.retain(|id| !found.contains_key(id));
            if to_load.is_empty() {
                break;
            }
            for id in std::mem::take(&mut to_load) {
                let Some(lead) = self.store.get(&id).await? else { continue };
                keys.extend(identity_keys(&lead, fold));
                // A duplicate's original is the same person.
                to_load.extend(lead.duplicate_of.clone());
                found.insert(id, lead);
            }
        }
        let now = self.clock.now();
        let mut out = Erasure::default();
        // Every key of the person goes from every lead of theirs: a lead holds claims on keys
        // its duplicates brought, too.
        let keys: Vec<String> = keys.into_iter().collect();
        for (id, _) in found {
            let r = self
                .store
                .update(vec![id.clone()], move |l| {
                    if l.personal_data_erased_at.is_some() {
                        return false;
                    }
                    if l.in_flight() {
                        let marked = !l.erasure_pending;
                        l.erasure_pending = true;
                        return marked;
                    }
                    l.erase_personal_data("request", now)
                })
                .await?;
            let erased = match r.into_iter().next() {
                Some(Updated::Written(l) | Updated::Unchanged(l)) if l.erasure_pending => {
                    out.pending.push(id.clone());
                    false
                }
                Some(Updated::Written(_)) => {
                    out.erased.push(id.clone());
                    true
                }
                _ => continue,
            };
            // The keys go at once, so that a later lead from this person is a new lead.
            self.store.forget(&id, keys.clone()).await?;
            if erased {
                self.scrub_crm_errors(&id).await?;
            }
        }
        tracing::info!(erased = out.erased.len(), pending = out.pending.len(), "erasure on request");
        Ok(out)
    }

    /// A CRM's refusal can quote what it was sent (Salesforce's `INVALID_EMAIL_ADDRESS` and
    /// HubSpot's `INVALID_EMAIL` name the address), and a delivery keeps its last error: an
    /// erased lead's CRM deliveries keep that they failed, not the CRM's words. Nothing to do
    /// where no CRM is configured (other targets' errors are a status code).
    pub(super) async fn scrub_crm_errors(&self, lead: &LeadId) -> Result<(), StoreError> {
        if self.settings.crm.names().is_empty() {
            return Ok(());
        }
        let mut scrubbed = self.store.deliveries(lead).await?;
        scrubbed.retain(|d| {
            d.kind == NotificationKind::CrmUpsert && d.last_error.as_deref().is_some_and(|e| e != SCRUBBED)
        });
        if scrubbed.is_empty() {
            return Ok(());
        }
        for d in &mut scrubbed {
            d.last_error = Some(SCRUBBED.into());
        }
        self.store.put_deliveries(scrubbed).await
    }

    /// One retention pass: personal data of leads with no activity for `personal_data_days`
    /// erased (or for `delete_after_days`, when only that is set), leads idle for
    /// `delete_after_days` deleted, identity claims past the dedup window dropped.
    pub async fn retention(&self) -> Result<Retained, StageError> {
        self.retention_paced(0).await
    }

    /// A retention pass that, after each write, rests `rest` times as long as the write took:
    /// with one writer (SQLite) the pipeline keeps at least `rest / (rest + 1)` of it however
    /// much is due, and a pass that falls behind catches up on the next.
    pub async fn retention_paced(&self, rest: u32) -> Result<Retained, StageError> {
        let pause = |began: std::time::Instant| async move {
            if rest > 0 {
                tokio::time::sleep(began.elapsed() * rest).await;
            }
        };
        let r = &self.settings.retention;
        let now = self.clock.now();
        let mut done = Retained::default();
        if let Some(idle_for) = r.personal_data.or(r.delete_after) {
            let before = now - idle_for;
            let why = format!("retention: no activity for {}", crate::config::RetentionSettings::describe(idle_for));
            let fold = self.settings.dedup.fold_gmail;
            let mut after = None;
            loop {
                let page = self.store.idle(before, after, PAGE).await?;
                // A slice at a time: one write erasing every lead of it (each lead's identity
                // keys taken as it is erased, in the same write), the keys forgotten together
                // (the SQLite writer commits them as one group), then a rest as long as `rest`
                // times the slice took, so that the writer the stages share is not held long.
                for slice in page.leads.chunks(ERASE_SLICE) {
                    let began = std::time::Instant::now();
                    let keys: Arc<Mutex<HashMap<LeadId, Vec<String>>>> = Default::default();
                    let (taken, why) = (keys.clone(), why.clone());
                    let written = self
                        .store
                        .update(slice.to_vec(), move |l| {
                            if l.personal_data_erased_at.is_some() || l.last_activity() >= before {
                                return false;
                            }
                            let k = identity_keys(l, fold);
                            // An optimistic store may call this again: the keys are the same.
                            taken.lock().unwrap_or_else(|e| e.into_inner()).insert(l.id.clone(), k);
                            l.erase_personal_data(&why, now)
                        })
                        .await?;
                    let keys = std::mem::take(&mut *keys.lock().unwrap_or_else(|e| e.into_inner()));
                    let forgets = written.iter().filter_map(|u| match u {
                        Updated::Written(l) => Some(async {
                            self.store.forget(&l.id, keys.get(&l.id).cloned().unwrap_or_default()).await?;
                            self.scrub_crm_errors(&l.id).await
                        }),
                        _ => None,
                    });
                    let forgotten = futures::future::join_all(forgets).await;
                    done.erased += forgotten.len();
                    forgotten.into_iter().collect::<Result<Vec<()>, _>>()?;
                    pause(began).await;
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        let claims_before = now - chrono::Duration::days(i64::from(self.settings.dedup.window_days));
        let leads_before = r.delete_after.map(|d| now - d);
        loop {
            let began = std::time::Instant::now();
            let e = self.store.expire(leads_before, claims_before, 10 * PAGE).await?;
            pause(began).await;
            done.deleted += e.leads;
            done.claims += e.claims;
            if e.leads < 10 * PAGE && e.claims < 10 * PAGE {
                break;
            }
        }
        if done != Retained::default() {
            tracing::info!(?done, "retention");
        }
        Ok(done)
    }
}
