//! The pure core: leads, normalization, identity, scoring, pools and round-robin. No I/O.

pub mod availability;
pub mod email;
pub mod identity;
pub mod intake;
pub mod lead;
pub mod metrics;
pub mod net;
pub mod phone;
pub mod pool;
pub mod roster;
pub mod round_robin;
pub mod routing;
pub mod scoring;

pub use email::{Email, InvalidEmail};
pub use identity::identity_keys;
pub use intake::{FieldError, Intake, IntakeOptions, normalize, normalize_lenient};
pub use lead::{
    AssignedBy, Assignment, Contact, HistoryEntry, Lead, LeadId, LeadStatus, NotificationKind, Reroute, RulePoints,
    Stage, Touch,
};
pub use phone::{InvalidPhone, Phone, Region};
pub use pool::{Manager, Pool, PoolMatch};
pub use roster::{CrmOwner, Rep, RepRecord, Roster, Unavailable};
pub use round_robin::WeightedRoundRobin;
pub use scoring::{Condition, Rule, Scored, ScoringRules};
