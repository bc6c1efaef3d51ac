//! The job kinds rcjobs knows, with their names as stored in `rcjobs.job.kind`.

use std::fmt;
use std::str::FromStr;

/// Every job kind; names follow the mod_rocketchat adhoc task class names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A role was assigned to a user in a course or module context.
    EnrolRoleAssign,
    /// A role was removed from a user in a course or module context.
    EnrolRoleUnassign,
    /// A user's enrolment in a course was created, updated (status, window) or deleted.
    Enrolment,
    /// One user should be (re)checked in one room.
    EnrolUserToRocketchatGroup,
    /// Full convergence of one room.
    SynchronizeGroup,
    /// One user should be (re)checked in every room.
    SynchronizeUserEverywhere,
    /// A user was suspended or deleted: leave every room.
    UnenrolUserEverywhere,
    /// A restored or duplicated course module (or course) needs its own room.
    Restore,
    /// Recycle-bin life cycle of a room (trash, restore, purge).
    Recyclebin,
    /// Periodic drift repair of every room.
    ReconcileAll,
    /// A course was reset with the plugin's `reset_rocketchat` option: delete a room's
    /// messages up to the reset.
    CleanHistory,
}

impl Kind {
    /// All kinds, in a stable order.
    pub const ALL: [Kind; 11] = [
        Kind::EnrolRoleAssign,
        Kind::EnrolRoleUnassign,
        Kind::Enrolment,
        Kind::EnrolUserToRocketchatGroup,
        Kind::SynchronizeGroup,
        Kind::SynchronizeUserEverywhere,
        Kind::UnenrolUserEverywhere,
        Kind::Restore,
        Kind::Recyclebin,
        Kind::ReconcileAll,
        Kind::CleanHistory,
    ];

    /// The name used in the queue (`rcjobs.job.kind`) and in `rcjobs enqueue KIND`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::EnrolRoleAssign => "enrol_role_assign",
            Kind::EnrolRoleUnassign => "enrol_role_unassign",
            Kind::Enrolment => "enrolment",
            Kind::EnrolUserToRocketchatGroup => "enrol_user_to_rocketchat_group",
            Kind::SynchronizeGroup => "synchronize_group",
            Kind::SynchronizeUserEverywhere => "synchronize_user_everywhere",
            Kind::UnenrolUserEverywhere => "unenrol_user_everywhere",
            Kind::Restore => "restore",
            Kind::Recyclebin => "recyclebin",
            Kind::ReconcileAll => "reconcile_all",
            Kind::CleanHistory => "clean_history",
        }
    }

    /// Top-level payload fields the SQL `rcjobs.enqueue` checks for (present in both the
    /// plugin's customdata and the reduced payload, so either shape passes the SQL check).
    pub const fn required_fields(self) -> &'static [&'static str] {
        match self {
            Kind::EnrolRoleAssign | Kind::EnrolRoleUnassign => &["roleid", "context"],
            Kind::Enrolment => &["courseid"],
            Kind::EnrolUserToRocketchatGroup => &["userid"],
            Kind::SynchronizeUserEverywhere | Kind::UnenrolUserEverywhere => &["userid"],
            Kind::Recyclebin => &["action"],
            Kind::SynchronizeGroup | Kind::Restore | Kind::ReconcileAll | Kind::CleanHistory => &[],
        }
    }

    /// Default attempts before a job is dead (Moodle 4.4+ uses 12 for adhoc tasks).
    pub const fn default_max_attempts(self) -> i32 {
        match self {
            Kind::ReconcileAll => 5,
            _ => 12,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a kind name rcjobs does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job kind {0:?} (known: enrol_role_assign, enrol_role_unassign, enrolment, enrol_user_to_rocketchat_group, synchronize_group, synchronize_user_everywhere, unenrol_user_everywhere, restore, recyclebin, reconcile_all, clean_history)")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        // Accept the plugin's fully qualified class names too (`\mod_rocketchat\task\…`).
        let short = s.trim().trim_start_matches('\\');
        let short = short
            .strip_prefix("mod_rocketchat\\task\\")
            .unwrap_or(short);
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == short)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}
