//! The notification a rep or manager receives, and the identities that make it exactly-once.

use crate::domain::{Lead, LeadId, NotificationKind, RulePoints};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifiedLead {
    pub id: LeadId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub source: String,
    pub score: Option<i64>,
    pub grade: Option<String>,
    pub reasons: Vec<RulePoints>,
}

impl NotifiedLead {
    pub fn of(lead: &Lead) -> NotifiedLead {
        NotifiedLead {
            id: lead.id.clone(),
            name: lead.contact.display_name(),
            email: lead.contact.email.as_ref().map(|e| e.to_string()),
            phone: lead.contact.phone.as_ref().map(|p| p.to_string()),
            company: lead.contact.company.clone(),
            source: lead.source.clone(),
            score: lead.score,
            grade: lead.grade.clone(),
            reasons: lead.breakdown.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifiedRep {
    pub id: String,
    pub name: String,
}

/// For `re_engaged`: the new arrival that turned out to be the lead the rep owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifiedTouch {
    pub lead_id: LeadId,
    pub source: String,
    pub matched_on: String,
}

/// The webhook body, exactly as CONFIG.md documents it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub delivery_id: String,
    pub kind: NotificationKind,
    pub lead: NotifiedLead,
    pub rep: Option<NotifiedRep>,
    pub pool: Option<String>,
    pub why: Option<String>,
    pub accept_url: Option<String>,
    pub sent_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touch: Option<NotifiedTouch>,
}

/// The one id of a (lead, recipient, kind) notification, the same on every retry and restart.
/// `round` counts the lead's changes of owner: a rep given the same lead again later is told
/// again, under a new id.
pub fn delivery_id(lead: &LeadId, recipient: &str, kind: NotificationKind, round: u32) -> String {
    let base = format!("delivery\0{lead}\0{recipient}\0{}", kind.as_str());
    let key = if round == 0 { base } else { format!("{base}\0{round}") };
    LeadId::derived(&key).to_string()
}

/// Hex HMAC-SHA256 of `message` under `key`.
pub fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of a hex HMAC-SHA256.
pub fn hmac_verify(key: &[u8], message: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else { return false };
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(message);
    mac.verify_slice(&sig).is_ok()
}

/// `t=<unix>,v1=<hex hmac-sha256 of "t.body">`, the header on outgoing (and generic incoming) webhooks.
pub fn signature_header(secret: &str, at: DateTime<Utc>, body: &[u8]) -> String {
    let t = at.timestamp();
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={t},v1={}", hmac_hex(secret.as_bytes(), &signed))
}

/// The accept link's signature: an HMAC of lead id, rep id and the link's expiry (unix seconds).
pub fn accept_sig(secret: &str, lead: &LeadId, rep: &str, exp: i64) -> String {
    hmac_hex(secret.as_bytes(), accept_signed(lead, rep, exp).as_bytes())
}

fn accept_signed(lead: &LeadId, rep: &str, exp: i64) -> String {
    format!("accept\0{lead}\0{rep}\0{exp}")
}

/// Whether `sig` is this link's signature (constant time).
pub fn accept_sig_valid(secret: &str, lead: &LeadId, rep: &str, exp: i64, sig: &str) -> bool {
    hmac_verify(secret.as_bytes(), accept_signed(lead, rep, exp).as_bytes(), sig)
}

/// A link that accepts `lead` for `rep` until `exp` (unix seconds). Rep ids are URL-safe.
pub fn accept_url(public_url: &str, secret: &str, lead: &LeadId, rep: &str, exp: i64) -> String {
    format!("{public_url}/v1/leads/{lead}/accept?rep={rep}&exp={exp}&sig={}", accept_sig(secret, lead, rep, exp))
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_per_lead_recipient_kind() {
        let l = LeadId::new();
        let a = delivery_id(&l, "ana", NotificationKind::Assigned, 0);
        assert_eq!(a, delivery_id(&l, "ana", NotificationKind::Assigned, 0));
        assert_ne!(a, delivery_id(&l, "ben", NotificationKind::Assigned, 0));
        assert_ne!(a, delivery_id(&l, "ana", NotificationKind::ReEngaged, 0));
        assert_ne!(a, delivery_id(&l, "ana", NotificationKind::Assigned, 1));
    }

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let h = signature_header("s3cret", at, b"{}");
        let v1 = h.split("v1=").nth(1).unwrap();
        assert!(hmac_verify(b"s3cret", b"1700000000.{}", v1));
        assert!(!hmac_verify(b"s3cret", b"1700000000.{ }", v1));
        assert!(!hmac_verify(b"other", b"1700000000.{}", v1));
        assert!(!hmac_verify(b"s3cret", b"1700000000.{}", "zz"));
    }
}
