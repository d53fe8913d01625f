//! The CRM loop's pipeline side: a routed lead's upsert (a delivery of the notify stage), the
//! record id kept on the lead, and outcomes the CRM reports moving leads forwards.

use super::{Pipeline, StageError};
use crate::crm::{CrmName, Outcome};
use crate::domain::{LeadId, LeadStatus};
use crate::ports::{DeliveryResult, LeadStore, Notifier, Queue, StoreError, Updated};
use chrono::{DateTime, Utc};
use indexmap::IndexMap;

/// Where the lead of a CRM record is kept (`crm:hubspot:<contact id>`).
pub fn record_key(crm: CrmName, record: &str) -> String {
    format!("{}:{record}", crm.recipient())
}

/// How far Salesforce's changes have been read back.
const READ_BACK_MARK: &str = "crm:salesforce:read-back";

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// Upserts the lead into `crm` with its owner; the record's id is kept on the lead (and
    /// the lead under the record's id) before the delivery counts as delivered.
    pub(super) async fn crm_upsert(&self, crm: CrmName, lead: &crate::domain::Lead) -> DeliveryResult {
        let Some(client) = &self.crm else {
            return DeliveryResult::Dead {
                error: format!("{} is not configured (or its secrets are unset)", crm.label()),
            };
        };
        let Some(owner) = lead.owner.as_deref() else {
            return DeliveryResult::Dead { error: "the lead has no owner to write".into() };
        };
        let roster = match self.roster().await {
            Ok(r) => r,
            Err(e) => {
                return DeliveryResult::Retry { error: format!("the roster could not be read: {e}"), after: None };
            }
        };
        let Some(rep) = roster.rep(owner) else {
            return DeliveryResult::Dead { error: format!("rep {owner} is no longer on the roster") };
        };
        match client.upsert(crm, lead, rep).await {
            Ok(Some(record)) => match self.keep_record(crm, &lead.id, &record).await {
                Ok(()) => DeliveryResult::Delivered,
                Err(e) => {
                    DeliveryResult::Retry { error: format!("the CRM record id could not be kept: {e}"), after: None }
                }
            },
            Ok(None) => DeliveryResult::Delivered,
            Err(e) => e,
        }
    }

    async fn keep_record(&self, crm: CrmName, lead: &LeadId, record: &str) -> Result<(), StoreError> {
        self.store.update(vec![lead.clone()], keep_record_id(crm.as_str().to_owned(), record.to_owned())).await?;
        self.store.put_value(&record_key(crm, record), lead.as_str()).await
    }

    /// The lead a CRM record was written from.
    pub async fn crm_lead(&self, crm: CrmName, record: &str) -> Result<Option<LeadId>, StoreError> {
        Ok(self.store.value(&record_key(crm, record)).await?.as_deref().and_then(LeadId::parse))
    }

    /// Moves each lead to the status its CRM reports, forwards only (`Lead::crm_outcome`);
    /// returns how many moved.
    pub async fn crm_outcomes(
        &self,
        crm: CrmName,
        outcomes: Vec<(LeadId, LeadStatus, String)>,
    ) -> Result<usize, StoreError> {
        // One store call for them all; a lead named twice takes its outcomes in order.
        let mut by_lead: IndexMap<LeadId, Vec<(LeadStatus, String)>> = IndexMap::new();
        for (id, to, said) in outcomes {
            by_lead.entry(id).or_default().push((to, said));
        }
        if by_lead.is_empty() {
            return Ok(0);
        }
        let ids = by_lead.keys().cloned().collect();
        let written = self.store.update(ids, apply_outcomes(crm, by_lead, self.clock.now())).await?;
        let mut moved = 0;
        for l in written.iter().filter_map(|u| match u {
            Updated::Written(l) => Some(l),
            _ => None,
        }) {
            tracing::info!(lead_id = %l.id, status = %l.status, crm = crm.as_str(), "status from the CRM");
            moved += 1;
        }
        Ok(moved)
    }

    /// One pass over Salesforce's changes since the last (a day back on the first): the Leads'
    /// statuses and converted leads' opportunities, applied forwards only. Returns how many
    /// leads moved; nothing without `[crm.salesforce]`.
    pub async fn crm_read_back(&self) -> Result<usize, StageError> {
        let Some(sf) = self.crm.as_ref().and_then(|c| c.salesforce()) else { return Ok(0) };
        let now = self.clock.now();
        let mark = self
            .store
            .value(READ_BACK_MARK)
            .await?
            .and_then(|m| DateTime::parse_from_rfc3339(&m).ok().map(|t| t.with_timezone(&Utc)))
            .unwrap_or(now - chrono::Duration::days(1));
        // A second back: changes within the mark's own second are read again (moves are
        // forwards only, so reading one twice changes nothing).
        let (outcomes, latest) = sf
            .changes(mark - chrono::Duration::seconds(1))
            .await
            .map_err(|e| StageError::NotYet(format!("Salesforce read-back: {}", e.error().unwrap_or_default())))?;
        let outcomes: Vec<(LeadId, LeadStatus, String)> = outcomes
            .into_iter()
            .filter_map(|Outcome { lead, status, said }| Some((LeadId::parse(&lead)?, status, said)))
            .collect();
        let moved = self.crm_outcomes(CrmName::Salesforce, outcomes).await?;
        if latest > mark {
            self.store.put_value(READ_BACK_MARK, &latest.to_rfc3339()).await?;
        }
        Ok(moved)
    }
}

/// Keeps a CRM record's id on the lead (unchanged when it is already there).
fn keep_record_id(crm: String, record: String) -> impl crate::ports::LeadChange {
    move |l: &mut crate::domain::Lead| {
        if l.crm.get(&crm).is_some_and(|r| *r == record) {
            return false;
        }
        l.crm.insert(crm.clone(), record.clone());
        true
    }
}

/// What `leadrouter crm resync` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Resynced {
    /// Leads looked at (received since the date).
    pub leads: usize,
    /// Failed CRM deliveries sent again.
    pub tried: usize,
    pub delivered: usize,
    /// Still failing: each with its lead and the CRM's words.
    pub failed: Vec<(String, String)>,
}

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// Sends again every CRM delivery that failed (dead, or still failing) of the leads
    /// received since `since`, for each lead's current owner: once the cause (a missing owner,
    /// a validation rule, a spent limit) is fixed. The upsert key makes a record already there
    /// an update, never a second record.
    pub async fn crm_resync(&self, since: DateTime<Utc>) -> Result<Resynced, StoreError> {
        let mut out = Resynced::default();
        let mut after = None;
        loop {
            let page = self.store.since(since, after, 200).await?;
            for lead in &page.items {
                out.leads += 1;
                if lead.owner.is_none() {
                    continue;
                }
                let failed: Vec<crate::ports::Delivery> = self
                    .store
                    .deliveries(&lead.id)
                    .await?
                    .into_iter()
                    .filter(|d| CrmName::of_recipient(&d.recipient).is_some() && d.delivered_at.is_none())
                    .collect();
                for mut d in failed {
                    let Some(crm) = CrmName::of_recipient(&d.recipient) else { continue };
                    out.tried += 1;
                    let now = self.clock.now();
                    d.attempts += 1;
                    d.first_attempt_at.get_or_insert(now);
                    match self.crm_upsert(crm, lead).await {
                        DeliveryResult::Delivered => {
                            d.delivered_at = Some(now);
                            d.dead = false;
                            d.last_error = None;
                            d.parked_since = None;
                            out.delivered += 1;
                        }
                        DeliveryResult::Retry { error, .. } | DeliveryResult::Dead { error } => {
                            d.last_error = Some(error.clone());
                            out.failed.push((lead.id.to_string(), error));
                        }
                    }
                    self.store.put_deliveries(vec![d]).await?;
                }
            }
            match page.next_cursor {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }
}

/// Applies each lead's outcomes from `crm`, in order, forwards only.
fn apply_outcomes(
    crm: CrmName,
    by_lead: IndexMap<LeadId, Vec<(LeadStatus, String)>>,
    now: DateTime<Utc>,
) -> impl crate::ports::LeadChange {
    move |l: &mut crate::domain::Lead| {
        let mut moved = false;
        for (to, said) in by_lead.get(&l.id).into_iter().flatten() {
            moved |= l.crm_outcome(crm.label(), *to, said, now);
        }
        moved
    }
}
