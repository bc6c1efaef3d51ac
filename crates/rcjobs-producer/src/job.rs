//! [`Job`]: one typed job of any kind, with its dedup and exclusion keys.

use crate::kind::{Kind, UnknownKind};
use crate::payload::*;
use serde_json::Value;

/// A job that failed validation, with the kind so the message stands alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The kind is not one rcjobs knows.
    #[error(transparent)]
    UnknownKind(#[from] UnknownKind),
    /// The payload is not a JSON object.
    #[error("{kind}: payload must be a JSON object, got {got}")]
    NotAnObject {
        /// Job kind.
        kind: Kind,
        /// JSON type found instead.
        got: &'static str,
    },
    /// A field is missing, unknown, mistyped or out of range.
    #[error("{kind}: invalid payload: {message}")]
    Invalid {
        /// Job kind.
        kind: Kind,
        /// What is wrong (field names, never values of secrets: user rows are not echoed).
        message: String,
    },
}

/// One job, typed. Build it directly, or from stored/plugin JSON with [`Job::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// `enrol_role_assign`.
    EnrolRoleAssign(EnrolRole),
    /// `enrol_role_unassign`.
    EnrolRoleUnassign(EnrolRole),
    /// `enrolment`.
    Enrolment(Enrolment),
    /// `enrol_user_to_rocketchat_group`.
    EnrolUserToRocketchatGroup(EnrolUserToGroup),
    /// `synchronize_group`.
    SynchronizeGroup(SynchronizeGroup),
    /// `synchronize_user_everywhere`.
    SynchronizeUserEverywhere(UserScope),
    /// `unenrol_user_everywhere`.
    UnenrolUserEverywhere(UserScope),
    /// `restore`.
    Restore(Restore),
    /// `recyclebin`.
    Recyclebin(Recyclebin),
    /// `reconcile_all`.
    ReconcileAll(ReconcileAll),
    /// `clean_history`.
    CleanHistory(CleanHistory),
}

/// The queue keys a job is enqueued with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobKeys {
    /// Unique among not-yet-started jobs: a second enqueue returns the pending job.
    pub dedup_key: Option<String>,
    /// At most one running job per key, FIFO.
    pub exclusion_key: Option<String>,
}

/// The exclusion key that serialises all work on the room of course module `cmid`.
pub fn room_lock_key(cmid: i64) -> String {
    format!("room:{cmid}")
}

/// The dedup key of an event-driven full sync of `cmid`'s room.
pub fn sync_dedup_key(cmid: i64) -> String {
    format!("sync:{cmid}")
}

/// The dedup key of a periodic (reconcile) sync of `cmid`'s room. Distinct from
/// [`sync_dedup_key`] so an event-driven sync is never folded into a sync scheduled for
/// later in the period.
pub fn periodic_sync_dedup_key(cmid: i64) -> String {
    format!("rsync:{cmid}")
}

/// The dedup key of the `reconcile_all` run for the period starting at `period_start`
/// (unix seconds): N worker replicas scheduling the same period make one job.
pub fn reconcile_dedup_key(period_start: i64) -> String {
    format!("reconcile_all:{period_start}")
}

impl Job {
    /// Parses a payload of `kind`, in the stored shape or in mod_rocketchat's customdata
    /// shape (which is reduced to ids: user rows and member snapshots are dropped).
    /// `kind` may be the plugin's class name (`\mod_rocketchat\task\synchronize_group`).
    pub fn parse(kind: &str, payload: &Value) -> Result<Job, PayloadError> {
        let kind: Kind = kind.parse()?;
        Self::parse_kind(kind, payload)
    }

    /// [`Job::parse`] for an already-known kind.
    pub fn parse_kind(kind: Kind, payload: &Value) -> Result<Job, PayloadError> {
        if !payload.is_object() {
            return Err(PayloadError::NotAnObject {
                kind,
                got: rcjobs_queue::jsonb_typeof(payload),
            });
        }
        fn de<T: serde::de::DeserializeOwned>(kind: Kind, v: &Value) -> Result<T, PayloadError> {
            T::deserialize(v).map_err(|e| PayloadError::Invalid {
                kind,
                message: e.to_string(),
            })
        }
        Ok(match kind {
            Kind::EnrolRoleAssign => Job::EnrolRoleAssign(de(kind, payload)?),
            Kind::EnrolRoleUnassign => Job::EnrolRoleUnassign(de(kind, payload)?),
            Kind::Enrolment => Job::Enrolment(de(kind, payload)?),
            Kind::EnrolUserToRocketchatGroup => Job::EnrolUserToRocketchatGroup(de(kind, payload)?),
            Kind::SynchronizeGroup => Job::SynchronizeGroup(de(kind, payload)?),
            Kind::SynchronizeUserEverywhere => Job::SynchronizeUserEverywhere(de(kind, payload)?),
            Kind::UnenrolUserEverywhere => Job::UnenrolUserEverywhere(de(kind, payload)?),
            Kind::Restore => Job::Restore(de(kind, payload)?),
            Kind::Recyclebin => Job::Recyclebin(de(kind, payload)?),
            Kind::ReconcileAll => Job::ReconcileAll(de(kind, payload)?),
            Kind::CleanHistory => Job::CleanHistory(de(kind, payload)?),
        })
    }

    /// The job's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Job::EnrolRoleAssign(_) => Kind::EnrolRoleAssign,
            Job::EnrolRoleUnassign(_) => Kind::EnrolRoleUnassign,
            Job::Enrolment(_) => Kind::Enrolment,
            Job::EnrolUserToRocketchatGroup(_) => Kind::EnrolUserToRocketchatGroup,
            Job::SynchronizeGroup(_) => Kind::SynchronizeGroup,
            Job::SynchronizeUserEverywhere(_) => Kind::SynchronizeUserEverywhere,
            Job::UnenrolUserEverywhere(_) => Kind::UnenrolUserEverywhere,
            Job::Restore(_) => Kind::Restore,
            Job::Recyclebin(_) => Kind::Recyclebin,
            Job::ReconcileAll(_) => Kind::ReconcileAll,
            Job::CleanHistory(_) => Kind::CleanHistory,
        }
    }

    /// The payload as stored in the queue: ids only, `"v": 1`.
    pub fn payload(&self) -> Value {
        let r = match self {
            Job::EnrolRoleAssign(p) | Job::EnrolRoleUnassign(p) => serde_json::to_value(p),
            Job::Enrolment(p) => serde_json::to_value(p),
            Job::EnrolUserToRocketchatGroup(p) => serde_json::to_value(p),
            Job::SynchronizeGroup(p) => serde_json::to_value(p),
            Job::SynchronizeUserEverywhere(p) | Job::UnenrolUserEverywhere(p) => {
                serde_json::to_value(p)
            }
            Job::Restore(p) => serde_json::to_value(p),
            Job::Recyclebin(p) => serde_json::to_value(p),
            Job::ReconcileAll(p) => serde_json::to_value(p),
            Job::CleanHistory(p) => serde_json::to_value(p),
        };
        // Plain structs of integers, strings and enums always serialize.
        r.unwrap_or(Value::Null)
    }

    /// Checks a job built in Rust by round-tripping it through the parser, so hand-built
    /// values obey exactly the rules stored and plugin payloads obey.
    pub fn validate(&self) -> Result<(), PayloadError> {
        Job::parse_kind(self.kind(), &self.payload()).map(|_| ())
    }

    /// Dedup and exclusion keys chosen for this job.
    ///
    /// * Room-scoped work that knows its cmid holds the room lock `room:<cmid>`, so two
    ///   convergences of one room never overlap.
    /// * Event-driven syncs dedup on `sync:<cmid>`, periodic ones on `rsync:<cmid>`.
    /// * `clean_history` dedups per room (`clean_history:<cmid>`, room lock too): two resets
    ///   pending for one room clean it once.
    /// * User-scoped jobs dedup on their scope; assign and unassign share a key because their
    ///   handling (re-read, then converge the affected rooms) is identical.
    pub fn keys(&self) -> JobKeys {
        let (dedup, excl) = match self {
            Job::EnrolRoleAssign(p) | Job::EnrolRoleUnassign(p) => (
                Some(format!(
                    "role:{}:{}:{}",
                    p.context.contextlevel, p.context.instanceid, p.userid
                )),
                None,
            ),
            Job::Enrolment(p) => (
                Some(match p.userid {
                    Some(u) => format!("enrolment:{}:{u}", p.courseid),
                    None => format!("enrolment:{}", p.courseid),
                }),
                None,
            ),
            Job::EnrolUserToRocketchatGroup(p) => (
                Some(match (&p.cmid, &p.rocketchatid) {
                    (Some(c), _) => format!("enrol_user:{c}:{}", p.userid),
                    (None, Some(r)) => format!("enrol_user:rc:{r}:{}", p.userid),
                    (None, None) => format!("enrol_user::{}", p.userid),
                }),
                None,
            ),
            Job::SynchronizeGroup(p) => match (p.cmid, &p.rocketchatid) {
                (Some(c), _) if p.periodic => {
                    (Some(periodic_sync_dedup_key(c)), Some(room_lock_key(c)))
                }
                (Some(c), _) => (Some(sync_dedup_key(c)), Some(room_lock_key(c))),
                (None, Some(r)) => (Some(format!("sync:rc:{r}")), None),
                (None, None) => (None, None),
            },
            Job::SynchronizeUserEverywhere(p) | Job::UnenrolUserEverywhere(p) => {
                (Some(format!("user:{}", p.userid)), None)
            }
            Job::Restore(p) => match (p.cmid, p.courseid) {
                (Some(c), _) => (Some(format!("restore:{c}")), Some(room_lock_key(c))),
                (None, Some(course)) => (Some(format!("restore:course:{course}")), None),
                (None, None) => (None, None),
            },
            Job::Recyclebin(p) => {
                let scope = match (p.cmid, &p.rocketchatid, p.binid) {
                    (Some(c), _, _) => c.to_string(),
                    (None, Some(r), _) => format!("rc:{r}"),
                    (None, None, Some(b)) => format!("bin:{b}"),
                    (None, None, None) => match (p.categorybinid, p.courseid) {
                        (Some(b), _) => format!("catbin:{b}"),
                        (None, Some(c)) => format!("course:{c}"),
                        (None, None) => String::new(),
                    },
                };
                (
                    Some(format!("recyclebin:{}:{scope}", p.action.as_str())),
                    p.cmid.map(room_lock_key),
                )
            }
            Job::ReconcileAll(p) => (p.period_start.map(reconcile_dedup_key), None),
            Job::CleanHistory(p) => match (p.cmid, &p.rocketchatid, p.courseid) {
                (Some(c), _, _) => (Some(format!("clean_history:{c}")), Some(room_lock_key(c))),
                (None, Some(r), _) => (Some(format!("clean_history:rc:{r}")), None),
                (None, None, Some(course)) => {
                    (Some(format!("clean_history:course:{course}")), None)
                }
                (None, None, None) => (None, None),
            },
        };
        JobKeys {
            dedup_key: dedup,
            exclusion_key: excl,
        }
    }
}
