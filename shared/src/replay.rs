//! Replay: what a routing document would do to the leads already stored, without changing
//! anything. It is the router run again: each lead is scored again and routed by the same
//! [`decide`] the assign stage calls, at the times the assign stage decided it, in batches as
//! that stage decided them (the leads of one batch share its decision time), over a view
//! rebuilt as it goes: each pool's round-robin cursor from zero, open leads per rep as the
//! replayed leads are given and as their owners accepted, won or lost them, each company's
//! owner as it was, availability at the decision time, test leads given without a turn.
//!
//! Each lead's first routing decision is compared with the stored one. Leads replay cannot
//! reproduce faithfully are counted under `excluded`, with why, and left out of the diff
//! (they still take their turns). The roster is the one in force at each decision: the
//! document's reps with the changes made through `/v1/reps` up to then.

use crate::config::Settings;
use crate::domain::routing::{Decision, HandMove, RoutingView, apply, decide_in_pool, first_look, move_by_hand};
use crate::domain::{AssignedBy, Assignment, Lead, LeadId, LeadStatus, RepRecord, Reroute, Roster};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// Where a lead goes under one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub grade: Option<String>,
    pub pool: Option<String>,
    pub rep: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BeforeAfter {
    pub before: u64,
    pub after: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Excluded {
    pub count: u64,
    pub why: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GradeShift {
    pub before: String,
    pub after: String,
    pub leads: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Unassigned {
    pub lead_id: String,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Changed {
    pub lead_id: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What replay found, as `replay --format json` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// Leads replayed and compared (not excluded, not test leads).
    pub leads: u64,
    /// Leads whose first owner would differ.
    pub owner_changes: u64,
    /// Pool (or `(unassigned)`) → leads before and after.
    pub pools: BTreeMap<String, BeforeAfter>,
    /// Rep (or `(unassigned)`) → leads before and after.
    pub reps: BTreeMap<String, BeforeAfter>,
    pub unassigned_total: u64,
    /// The first leads that would go unassigned, with why.
    pub unassigned: Vec<Unassigned>,
    /// Leads whose grade would change, by (before, after).
    pub grade_shifts: Vec<GradeShift>,
    /// The first leads whose owner would change.
    pub changes: Vec<Changed>,
    pub excluded: Excluded,
}

const NOBODY: &str = "(unassigned)";
const KEEP: usize = 50;

/// A decision time is final once leads read later cannot have been decided before it: leads
/// come in store order, which follows arrival to within this.
fn settle() -> chrono::Duration {
    chrono::Duration::minutes(10)
}

/// One stored lead as replay routes it again.
struct Sim {
    lead: Lead,
    /// The stored first decision.
    before: Placement,
    /// In store order.
    order: u64,
    /// The round-robin turn the stored lead took at each decision time (the order of a
    /// pool's leads within one batch).
    turns: HashMap<DateTime<Utc>, u64>,
    /// The decision times at which a manager had sent it away from its owner (from, manager).
    reroutes: HashMap<DateTime<Utc>, (String, String)>,
    /// Why it is left out of the diff, if it is.
    excluded: Option<&'static str>,
    /// Its first decision has been replayed.
    decided: bool,
    /// Decision and status times still to come.
    pending: usize,
}

#[derive(Clone, Debug)]
enum Event {
    Decide(LeadId),
    /// A manager moved the lead to this rep: replayed as the same move, taking no turn.
    Moved(LeadId, String, String),
    /// The owner moved the lead to a sales status (accepted, won, …).
    Status(LeadId, LeadStatus),
}

/// A replayed lead with an owner: its id, its owner, when it arrived.
type Owned = (LeadId, String, DateTime<Utc>);

/// When a stored lead was routed, when its owner moved it to which sales status, and when a
/// manager moved it to whom (rep, manager).
type Times = (Vec<DateTime<Utc>>, Vec<(DateTime<Utc>, LeadStatus)>, Vec<(DateTime<Utc>, String, String)>);

pub struct Replayer<'a> {
    settings: &'a Settings,
    roster: Roster,
    /// Roster changes not yet in force, oldest first.
    history: std::collections::VecDeque<RepRecord>,
    /// Each rep's latest change in force.
    in_force: BTreeMap<String, RepRecord>,
    cursors: HashMap<String, u64>,
    sims: HashMap<LeadId, Sim>,
    events: BTreeMap<DateTime<Utc>, Vec<Event>>,
    open: HashMap<String, u32>,
    /// Per company: the replayed leads that have an owner, in store order, with when each
    /// arrived (owner stickiness reads the latest within the dedup window).
    accounts: HashMap<String, BTreeMap<u64, Owned>>,
    read: u64,
    latest: Option<DateTime<Utc>>,
    grade_shifts: BTreeMap<(String, String), u64>,
    pub report: ReplayReport,
}

/// The lead as it was before routing: scored again by the document being replayed.
fn fresh(stored: &Lead, settings: &Settings) -> Lead {
    let mut l = stored.clone();
    l.status = LeadStatus::Unique;
    l.history.clear();
    l.pool = None;
    l.owner = None;
    l.why = None;
    l.notify_pending = None;
    l.assigned_at = None;
    l.first_assigned_at = None;
    l.accepted_at = None;
    l.previous_owner = None;
    l.round = 0;
    l.sla_due_at = None;
    l.sla_breached_at = None;
    l.assignment = None;
    l.first_assignment = None;
    l.reroute = None;
    settings.scoring.apply(&mut l, stored.received_at);
    l
}

/// Whether a history entry records a routing decision: the lead given, left unassigned, or
/// disqualified instead.
fn decided(h: &crate::domain::HistoryEntry) -> bool {
    !matches!(h.how, Some(AssignedBy::Manual { .. }))
        && matches!(h.to, LeadStatus::Assigned | LeadStatus::Unassigned | LeadStatus::Disqualified)
}

/// When the stored lead was routed ([`decided`]), and when its owner moved it to a sales status.
fn times(lead: &Lead) -> Times {
    let mut decisions: Vec<DateTime<Utc>> = lead.history.iter().filter(|h| decided(h)).map(|h| h.at).collect();
    decisions.dedup();
    let statuses = lead
        .history
        .iter()
        .filter(|h| LeadStatus::SALES.contains(&h.to) && h.from != Some(h.to))
        .map(|h| (h.at, h.to))
        .collect();
    let moves = lead
        .history
        .iter()
        .filter_map(|h| match &h.how {
            Some(AssignedBy::Manual { manager }) => Some((h.at, h.owner.clone()?, manager.clone())),
            _ => None,
        })
        .collect();
    (decisions, statuses, moves)
}

/// The stored lead's first routing decision.
fn first_placement(lead: &Lead) -> Placement {
    let first = lead.history.iter().find(|h| decided(h));
    let rep = first.filter(|h| h.to == LeadStatus::Assigned).and_then(|h| h.owner.clone());
    // The pool of the first assignment; the lead's pool now where that was not recorded.
    let pool = lead.first_assignment.as_ref().and_then(|a| a.pool.clone()).or_else(|| lead.pool.clone());
    Placement { grade: lead.grade.clone(), pool: rep.as_ref().and(pool), rep }
}

/// The rep a lead counts against (`max_open_leads`), if it is open.
fn open_owner(l: &Lead) -> Option<String> {
    l.is_open().then(|| l.owner.clone()).flatten()
}

impl<'a> Replayer<'a> {
    /// `roster_changes`: the `/v1/reps` changes, oldest first, each in force from its
    /// `updated_at` (from the start without one), laid over the document's reps.
    pub fn new(settings: &'a Settings, roster_changes: &[RepRecord]) -> Replayer<'a> {
        let mut history: Vec<RepRecord> = roster_changes.to_vec();
        history.sort_by_key(|r| r.updated_at);
        let mut r = Replayer {
            settings,
            roster: Roster::build(&settings.reps, &settings.pools, &[]),
            history: history.into(),
            in_force: BTreeMap::new(),
            cursors: HashMap::new(),
            sims: HashMap::new(),
            events: BTreeMap::new(),
            open: HashMap::new(),
            accounts: HashMap::new(),
            read: 0,
            latest: None,
            grade_shifts: BTreeMap::new(),
            report: ReplayReport::default(),
        };
        r.roster_at(DateTime::<Utc>::MIN_UTC);
        r
    }

    /// Puts in force the roster changes made by `at`.
    fn roster_at(&mut self, at: DateTime<Utc>) {
        let mut changed = false;
        while self.history.front().is_some_and(|r| r.updated_at.is_none_or(|t| t <= at)) {
            if let Some(r) = self.history.pop_front() {
                self.in_force.insert(r.id.clone(), r);
                changed = true;
            }
        }
        if changed {
            let changes: Vec<RepRecord> = self.in_force.values().cloned().collect();
            self.roster = Roster::build(&self.settings.reps, &self.settings.pools, &changes);
        }
    }

    /// Feeds one stored lead, in store order (oldest first). Leads never routed (duplicates,
    /// rejected, still arriving) are passed over.
    pub fn add(&mut self, lead: &Lead) {
        self.read += 1;
        let (decided, statuses, moves) = times(lead);
        if decided.is_empty() {
            return;
        }
        let excluded = if lead.personal_data_erased_at.is_some() {
            Some("personal data erased: the fields routing read are gone")
        } else if lead.first_assigned_at.is_some() && lead.first_assignment.is_none() {
            Some("routed before decisions were recorded")
        } else {
            None
        };
        let mut turns = HashMap::new();
        for Assignment { at, how, .. } in [&lead.first_assignment, &lead.assignment].into_iter().flatten() {
            if let AssignedBy::Turn { turn }
            | AssignedBy::SlaReassignment { turn, .. }
            | AssignedBy::Rerouted { turn, .. } = how
            {
                turns.insert(*at, *turn);
            }
        }
        // When a manager sent it away from its owner, and from whom.
        let reroutes = lead
            .history
            .iter()
            .filter_map(|h| match &h.how {
                Some(AssignedBy::Rerouted { from, manager, .. }) => Some((h.at, (from.clone(), manager.clone()))),
                _ => None,
            })
            .collect();
        for t in &decided {
            self.events.entry(*t).or_default().push(Event::Decide(lead.id.clone()));
        }
        for (t, s) in &statuses {
            self.events.entry(*t).or_default().push(Event::Status(lead.id.clone(), *s));
        }
        for (t, rep, by) in &moves {
            self.events.entry(*t).or_default().push(Event::Moved(lead.id.clone(), rep.clone(), by.clone()));
        }
        let sim = Sim {
            lead: fresh(lead, self.settings),
            before: first_placement(lead),
            order: self.read,
            turns,
            reroutes,
            excluded,
            decided: false,
            pending: decided.len() + statuses.len() + moves.len(),
        };
        self.sims.insert(lead.id.clone(), sim);
        let latest = self.latest.map_or(lead.received_at, |l| l.max(lead.received_at));
        self.latest = Some(latest);
        self.flush(Some(latest - settle()));
    }

    /// Replays what is left and returns the report.
    pub fn finish(mut self) -> ReplayReport {
        self.flush(None);
        let mut r = self.report;
        r.grade_shifts =
            self.grade_shifts.into_iter().map(|((before, after), leads)| GradeShift { before, after, leads }).collect();
        r
    }

    /// Replays every decision made before `before` (all of them: `None`).
    fn flush(&mut self, before: Option<DateTime<Utc>>) {
        while let Some(entry) = self.events.first_entry() {
            if before.is_some_and(|b| *entry.key() >= b) {
                break;
            }
            let (at, events) = entry.remove_entry();
            self.batch(at, events);
        }
    }

    /// One assign batch, as the assign stage runs it: one view as the batch started; the
    /// leads whose turn is in a pool decided pool by pool, each pool's cursor moving over its
    /// leads and the batch's own leads counted against caps; the rest decided one by one.
    fn batch(&mut self, now: DateTime<Utc>, events: Vec<Event>) {
        self.roster_at(now);
        let mut seen = HashSet::new();
        let mut ids: Vec<LeadId> = events
            .iter()
            .filter_map(|e| match e {
                Event::Decide(id) if seen.insert(id.clone()) => Some(id.clone()),
                _ => None,
            })
            .collect();
        // The order the stored batch gave out its turns, else store order.
        ids.sort_by_key(|id| {
            let s = &self.sims[id];
            (s.turns.get(&now).copied().unwrap_or(u64::MAX), s.order)
        });
        let mut sims: Vec<Sim> = ids.iter().filter_map(|id| self.sims.remove(id)).collect();
        for s in &mut sims {
            if let Some((from, by)) = s.reroutes.get(&now) {
                s.lead.reroute = Some(Reroute { from: from.clone(), by: by.clone(), note: None, at: now });
            }
        }
        let was_open: Vec<Option<String>> = sims.iter().map(|s| open_owner(&s.lead)).collect();
        let owners = self.owners_for(&sims, now);
        let open = self.open.clone();
        let (pools, roster) = (&self.settings.pools, &self.roster);
        let view = RoutingView { pools, roster, open: &open, owners: &owners, crm: None, now };
        let mut by_pool: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut singles = Vec::new();
        for (k, s) in sims.iter().enumerate() {
            match first_look(&s.lead, &view) {
                Decision::Turn { pool, .. } => by_pool.entry(pool).or_default().push(k),
                Decision::Nothing => {}
                _ => singles.push(k),
            }
        }
        for (i, members) in by_pool {
            let mut cursor = self.cursors.get(&pools[i].id).copied().unwrap_or(0);
            let mut given: HashMap<String, u32> = HashMap::new();
            for k in members {
                let l = &mut sims[k].lead;
                let decision = decide_in_pool(l, &view, i, &mut cursor, &mut given);
                apply(&decision, l, &view);
            }
            self.cursors.insert(pools[i].id.clone(), cursor);
        }
        for k in singles {
            let l = &mut sims[k].lead;
            match first_look(l, &view) {
                Decision::Turn { .. } => {}
                decision => {
                    apply(&decision, l, &view);
                }
            }
        }
        for (s, was) in sims.iter_mut().zip(was_open) {
            self.moved(s, was);
            if !s.decided {
                s.decided = true;
                self.compare(s);
            }
            s.pending -= 1;
        }
        for s in sims {
            if s.pending > 0 {
                self.sims.insert(s.lead.id.clone(), s);
            }
        }
        for e in &events {
            if let Event::Moved(id, rep, by) = e
                && let Some(mut s) = self.sims.remove(id)
            {
                let was = open_owner(&s.lead);
                let (open, owners) = (self.open.clone(), HashMap::new());
                let view = RoutingView { pools, roster: &self.roster, open: &open, owners: &owners, crm: None, now };
                let m = HandMove { rep: rep.clone(), by: by.clone(), note: None, force: true };
                if matches!(move_by_hand(&mut s.lead, &m, &view), Ok(true)) {
                    self.moved(&s, was);
                }
                s.pending -= 1;
                if s.pending > 0 {
                    self.sims.insert(id.clone(), s);
                }
            }
        }
        for e in events {
            if let Event::Status(id, to) = e
                && let Some(mut s) = self.sims.remove(&id)
            {
                let was = open_owner(&s.lead);
                if was.is_some() {
                    if to == LeadStatus::Accepted {
                        s.lead.accepted_at = Some(now);
                    }
                    s.lead.transition(to, "replayed: as its owner moved it", now);
                    self.moved(&s, was);
                }
                s.pending -= 1;
                if s.pending > 0 {
                    self.sims.insert(id, s);
                }
            }
        }
    }

    /// Keeps the open counts and the company owners up to date with a lead that changed.
    fn moved(&mut self, s: &Sim, was_open: Option<String>) {
        let now_open = open_owner(&s.lead);
        if was_open != now_open {
            if let Some(r) = was_open
                && let Some(n) = self.open.get_mut(&r)
            {
                *n = n.saturating_sub(1);
            }
            if let Some(r) = now_open {
                *self.open.entry(r).or_default() += 1;
            }
        }
        if let Some(domain) = s.lead.account() {
            let owned = self.accounts.entry(domain.to_owned()).or_default();
            match &s.lead.owner {
                Some(o) => {
                    owned.insert(s.order, (s.lead.id.clone(), o.clone(), s.lead.received_at));
                }
                None => {
                    owned.remove(&s.order);
                }
            }
        }
    }

    /// Each new lead's company and its latest owned lead within the dedup window, as the
    /// store answers the assign stage.
    fn owners_for(&self, sims: &[Sim], now: DateTime<Utc>) -> HashMap<String, (LeadId, String)> {
        let since = now - chrono::Duration::days(i64::from(self.settings.dedup.window_days));
        sims.iter()
            .map(|s| &s.lead)
            .filter(|l| !l.test && matches!(l.status, LeadStatus::Scored | LeadStatus::Unassigned))
            .filter_map(|l| {
                let d = l.account()?;
                let (_, (id, rep, received)) = self.accounts.get(d)?.last_key_value()?;
                (*received >= since).then(|| (d.to_owned(), (id.clone(), rep.clone())))
            })
            .collect()
    }

    /// Counts a lead's replayed first decision against the stored one.
    fn compare(&mut self, s: &Sim) {
        if s.lead.test {
            return;
        }
        let r = &mut self.report;
        if let Some(why) = s.excluded {
            r.excluded.count += 1;
            *r.excluded.why.entry(why.to_owned()).or_default() += 1;
            return;
        }
        let l = &s.lead;
        let after =
            Placement { grade: l.grade.clone(), pool: l.owner.as_ref().and(l.pool.clone()), rep: l.owner.clone() };
        let before = &s.before;
        r.leads += 1;
        let name = |v: &Option<String>| v.clone().unwrap_or_else(|| NOBODY.into());
        r.pools.entry(name(&before.pool)).or_default().before += 1;
        r.pools.entry(name(&after.pool)).or_default().after += 1;
        r.reps.entry(name(&before.rep)).or_default().before += 1;
        r.reps.entry(name(&after.rep)).or_default().after += 1;
        let g = |p: &Placement| p.grade.clone().unwrap_or_else(|| "-".into());
        if g(before) != g(&after) {
            *self.grade_shifts.entry((g(before), g(&after))).or_default() += 1;
        }
        if before.rep != after.rep {
            r.owner_changes += 1;
            if r.changes.len() < KEEP {
                r.changes.push(Changed {
                    lead_id: l.id.to_string(),
                    before: before.rep.clone(),
                    after: after.rep.clone(),
                });
            }
        }
        if after.rep.is_none() {
            r.unassigned_total += 1;
            if r.unassigned.len() < KEEP {
                let why = l.history.last().map(|h| h.reason.clone()).unwrap_or_default();
                r.unassigned.push(Unassigned { lead_id: l.id.to_string(), why });
            }
        }
    }
}

/// Replays `settings` over every lead stored since `since`, in store order, a page at a time;
/// `progress` hears how many leads each page had.
pub async fn replay_store<S: crate::ports::LeadStore>(
    store: &S,
    settings: &Settings,
    since: DateTime<Utc>,
    mut progress: impl FnMut(usize),
) -> Result<ReplayReport, crate::ports::StoreError> {
    // The roster's history; a rep changed before it was kept is taken as in force from the start.
    let mut changes = store.rep_history().await?;
    for mut r in store.reps().await? {
        if !changes.iter().any(|h| h.id == r.id) {
            r.updated_at = None;
            changes.push(r);
        }
    }
    let mut replayer = Replayer::new(settings, &changes);
    let mut after = None;
    loop {
        let page = store.since(since, after, 1_000).await?;
        for lead in &page.items {
            replayer.add(lead);
        }
        progress(page.items.len());
        match page.next_cursor {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok(replayer.finish())
}

/// `--since` and `?since=`: a date (midnight UTC) or an RFC 3339 time.
pub fn parse_since(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|t| t.to_utc()).ok().or_else(|| {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
    })
}

impl ReplayReport {
    /// Whether more than `pct` percent of the replayed leads would change owner.
    pub fn changed_more_than(&self, pct: f64) -> bool {
        self.leads > 0 && (self.owner_changes as f64) * 100.0 > pct * self.leads as f64
    }

    /// The report as a sales-ops engineer reads it in a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let table = |out: &mut String, title: &str, rows: &BTreeMap<String, BeforeAfter>| {
            let _ = writeln!(out, "{title:<24} {:>8} {:>8} {:>8}", "before", "after", "change");
            for (k, n) in rows {
                let _ =
                    writeln!(out, "{k:<24} {:>8} {:>8} {:>+8}", n.before, n.after, n.after as i64 - n.before as i64);
            }
            out.push('\n');
        };
        table(&mut out, "pool", &self.pools);
        table(&mut out, "rep", &self.reps);
        if self.grade_shifts.is_empty() {
            out.push_str("no grade changes\n\n");
        } else {
            out.push_str("grade shifts\n");
            for s in &self.grade_shifts {
                let _ = writeln!(out, "  {} -> {}: {}", s.before, s.after, s.leads);
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{} of {} leads would change owner", self.owner_changes, self.leads);
        const SHOWN: usize = 10;
        for c in self.changes.iter().take(SHOWN) {
            let (before, after) = (c.before.as_deref().unwrap_or(NOBODY), c.after.as_deref().unwrap_or(NOBODY));
            let _ = writeln!(out, "  {}: {before} -> {after}", c.lead_id);
        }
        if self.owner_changes as usize > SHOWN {
            let _ = writeln!(out, "  … and {} more (--format json lists {KEEP})", self.owner_changes as usize - SHOWN);
        }
        if self.unassigned_total == 0 {
            out.push_str("no lead would go unassigned\n");
        } else {
            let _ = writeln!(out, "{} leads would go unassigned:", self.unassigned_total);
            for u in &self.unassigned {
                let _ = writeln!(out, "  {}: {}", u.lead_id, u.why);
            }
            if self.unassigned_total as usize > self.unassigned.len() {
                let _ = writeln!(out, "  … and {} more", self.unassigned_total as usize - self.unassigned.len());
            }
        }
        if self.excluded.count > 0 {
            let _ = writeln!(out, "{} leads left out (replay cannot reproduce them):", self.excluded.count);
            for (why, n) in &self.excluded.why {
                let _ = writeln!(out, "  {n}: {why}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Contact, LeadId};
    use chrono::TimeZone;

    fn settings(extra_rule: &str, pools: &str) -> Settings {
        let doc = format!(
            "[server]\nadmin_token = \"x\"\nwebhook_secret = \"y\"\n[[scoring.rules]]\nname = \"senior\"\nfield = \"job_title\"\n\
             matches = '(?i)vp'\npoints = 50\n{extra_rule}\n[[reps]]\nid = \"ana\"\n[[reps]]\nid = \"ben\"\n\
             working_hours = \"Mon-Fri 09:00-17:00\"\n{pools}"
        );
        Settings::parse(&doc).unwrap_or_else(|p| panic!("{p}"))
    }

    fn lead(title: &str, country: &str, old: &Settings) -> Lead {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(); // a Tuesday
        let mut l = Lead::new(
            LeadId::new(),
            "web".into(),
            Contact { job_title: Some(title.into()), country: Some(country.into()), ..Contact::default() },
            at,
        );
        let s = old.scoring.score(&l);
        l.grade = Some(s.grade);
        l.transition(LeadStatus::Scored, "scored", at);
        let pool = old.pools.iter().find(|p| p.rule.matches(&l)).unwrap();
        l.assign_to(&pool.id, pool.rotation.pick(0).to_owned(), "old".into(), at);
        l.assigned_by(AssignedBy::Turn { turn: 0 }, at);
        l
    }

    #[test]
    fn reports_pools_reps_grades_and_the_unassigned() {
        let old = settings("", "[[pools]]\nid = \"all\"\nreps = [{ id = \"ana\" }]\n");
        let new = settings(
            "[[scoring.rules]]\nname = \"us\"\nfield = \"country\"\nin = [\"US\"]\npoints = 30\n",
            "[[pools]]\nid = \"top\"\nmatch = { grade = [\"A\"] }\nreps = [{ id = \"ben\" }]\n\
             [[pools]]\nid = \"us\"\nmatch = { country = [\"US\"] }\nreps = [{ id = \"ana\" }, { id = \"ben\" }]\n",
        );
        let leads = [lead("VP Sales", "US", &old), lead("Analyst", "US", &old), lead("Analyst", "FR", &old)];
        let mut r = Replayer::new(&new, &[]);
        for l in &leads {
            r.add(l);
        }
        let rep = r.finish();
        assert_eq!(rep.leads, 3);
        // VP in the US: 80 points, grade A, to ben (in hours at 12:00 UTC on a Tuesday).
        let n = |before, after| BeforeAfter { before, after };
        assert_eq!(rep.pools["top"], n(0, 1));
        assert_eq!(rep.pools["us"], n(0, 1));
        assert_eq!(rep.pools["all"], n(3, 0));
        assert_eq!(rep.pools[NOBODY], n(0, 1));
        assert_eq!(rep.reps["ben"], n(0, 1));
        assert_eq!(rep.reps["ana"], n(3, 1));
        let shift = |b: &str, a: &str| rep.grade_shifts.iter().find(|s| s.before == b && s.after == a).map(|s| s.leads);
        assert_eq!(shift("B", "A"), Some(1), "{:?}", rep.grade_shifts);
        assert_eq!(shift("D", "C"), Some(1));
        assert_eq!(rep.unassigned_total, 1);
        assert!(rep.unassigned[0].why.contains("no pool matches (grade D, country FR"), "{:?}", rep.unassigned);
        assert_eq!(rep.owner_changes, 2);
        let text = rep.render();
        assert!(text.contains("1 leads would go unassigned"), "{text}");
        assert!(text.contains("B -> A: 1"), "{text}");
    }
}
