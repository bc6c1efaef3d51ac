//! Typed, versioned payloads: the shape stored in the queue (ids only, `"v": 1`).
//!
//! Every payload type deserializes from **either** its stored shape **or** the customdata
//! mod_rocketchat writes into `mdl_task_adhoc` (whole `{user}` rows, member snapshots, role
//! lists as strings): the `*Wire` types below accept the union, and `TryFrom` reduces them to
//! ids and validates. Fields that carry state (user rows, member lists, role lists) are
//! dropped: handlers re-read committed state when they run. Unknown fields are rejected so a
//! typo is an error at enqueue time, not a silently ignored scope.

use crate::lenient;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// The payload version this crate writes and the newest it reads.
pub const PAYLOAD_VERSION: u16 = 1;

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn check_version(v: Option<u16>) -> Result<u16, Invalid> {
    match v.unwrap_or(PAYLOAD_VERSION) {
        PAYLOAD_VERSION => Ok(PAYLOAD_VERSION),
        other => Err(Invalid(format!(
            "payload version {other} is not supported (this build reads v{PAYLOAD_VERSION})"
        ))),
    }
}

fn positive(field: &str, v: i64) -> Result<i64, Invalid> {
    if v > 0 {
        Ok(v)
    } else {
        Err(Invalid(format!("{field} must be a positive id, got {v}")))
    }
}

fn opt_positive(field: &str, v: Option<i64>) -> Result<Option<i64>, Invalid> {
    v.map(|v| positive(field, v)).transpose()
}

/// A room key: a course module id, or minus a course id for a course's room declared in
/// standalone mode (`{prefix}rcjobs_room`). Zero names nothing.
fn opt_room_key(field: &str, v: Option<i64>) -> Result<Option<i64>, Invalid> {
    match v {
        Some(0) => Err(Invalid(format!(
            "{field} must be a course module id (or minus a course id for a course room), got 0"
        ))),
        other => Ok(other),
    }
}

/// Rocket.Chat room ids are short alphanumeric strings; anything else is a corrupt payload.
fn room_id(v: Option<String>) -> Result<Option<String>, Invalid> {
    match v {
        Some(s)
            if s.len() > 64
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            Err(Invalid(format!("rocketchatid {s:?} is not a room id")))
        }
        other => Ok(other),
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Moodle context levels the role jobs can name.
pub mod contextlevel {
    /// System context.
    pub const SYSTEM: i64 = 10;
    /// User context.
    pub const USER: i64 = 30;
    /// Course category context.
    pub const COURSECAT: i64 = 40;
    /// Course context (`instanceid` = course id).
    pub const COURSE: i64 = 50;
    /// Module context (`instanceid` = cmid).
    pub const MODULE: i64 = 70;
    /// Block context.
    pub const BLOCK: i64 = 80;
}

/// The context a role was (un)assigned in, as the plugin's `context` customdata field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextRef {
    /// `mdl_context.id`.
    #[serde(
        default,
        deserialize_with = "lenient::opt_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<i64>,
    /// 50 = course, 70 = module; other levels fan out to every room of the user.
    #[serde(deserialize_with = "lenient::id")]
    pub contextlevel: i64,
    /// Course id for level 50, cmid for level 70.
    #[serde(deserialize_with = "lenient::id")]
    pub instanceid: i64,
}

/// The plugin puts the whole `{user}` row here; only `id` is read, the rest (password hash
/// included) is discarded without being stored.
#[derive(Deserialize)]
struct MoodleUserRow {
    #[serde(deserialize_with = "lenient::id")]
    id: i64,
}

// ---------------------------------------------------------------- enrol_role_(un)assign

/// Payload of `enrol_role_assign` / `enrol_role_unassign`: user × (course or module) context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EnrolRoleWire")]
pub struct EnrolRole {
    /// Payload version.
    pub v: u16,
    /// The user whose role changed.
    pub userid: i64,
    /// The role assigned or removed (informative: the handler re-reads all roles).
    pub roleid: i64,
    /// The course, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub courseid: Option<i64>,
    /// Where the role was (un)assigned.
    pub context: ContextRef,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolRoleWire {
    #[serde(default)]
    v: Option<u16>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    userid: Option<i64>,
    #[serde(default)]
    moodleuser: Option<MoodleUserRow>,
    #[serde(deserialize_with = "lenient::id")]
    roleid: i64,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    courseid: Option<i64>,
    context: ContextRef,
}

impl TryFrom<EnrolRoleWire> for EnrolRole {
    type Error = Invalid;

    fn try_from(w: EnrolRoleWire) -> Result<Self, Invalid> {
        let userid = match (w.userid, w.moodleuser) {
            (Some(id), _) => id,
            (None, Some(u)) => u.id,
            (None, None) => {
                return Err(Invalid(
                    "missing userid (or the plugin's moodleuser row)".into(),
                ))
            }
        };
        Ok(EnrolRole {
            v: check_version(w.v)?,
            userid: positive("userid", userid)?,
            roleid: positive("roleid", w.roleid)?,
            courseid: opt_positive("courseid", w.courseid)?,
            context: ContextRef {
                id: opt_positive("context.id", w.context.id)?,
                contextlevel: w.context.contextlevel,
                instanceid: positive("context.instanceid", w.context.instanceid)?,
            },
        })
    }
}

// ---------------------------------------------------------------- enrolment

/// Payload of `enrolment`: a user's enrolment in a course changed (created, status, window,
/// deleted), or — without `userid` — an enrol instance of the course changed for everyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EnrolmentWire")]
pub struct Enrolment {
    /// Payload version.
    pub v: u16,
    /// The course.
    pub courseid: i64,
    /// The user, or `None` for a course-wide change (enrol instance enabled/disabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userid: Option<i64>,
    /// `mdl_enrol.id`, informative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrolid: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolmentWire {
    #[serde(default)]
    v: Option<u16>,
    #[serde(deserialize_with = "lenient::id")]
    courseid: i64,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    userid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    enrolid: Option<i64>,
}

impl TryFrom<EnrolmentWire> for Enrolment {
    type Error = Invalid;

    fn try_from(w: EnrolmentWire) -> Result<Self, Invalid> {
        Ok(Enrolment {
            v: check_version(w.v)?,
            courseid: positive("courseid", w.courseid)?,
            userid: opt_positive("userid", w.userid)?,
            enrolid: opt_positive("enrolid", w.enrolid)?,
        })
    }
}

// ---------------------------------------------------------------- enrol_user_to_rocketchat_group

/// Payload of `enrol_user_to_rocketchat_group`: one user × one room (by cmid or room id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EnrolUserToGroupWire")]
pub struct EnrolUserToGroup {
    /// Payload version.
    pub v: u16,
    /// The user.
    pub userid: i64,
    /// The course module, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmid: Option<i64>,
    /// The Rocket.Chat room id (the plugin's `rocketchatid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rocketchatid: Option<String>,
    /// The course context id, informative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coursecontextid: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolUserToGroupWire {
    #[serde(default)]
    v: Option<u16>,
    #[serde(deserialize_with = "lenient::id")]
    userid: i64,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    cmid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    rocketchatid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    coursecontextid: Option<i64>,
    /// Plugin: csv of role ids at queue time — stale by run time, dropped.
    #[serde(default)]
    #[allow(dead_code)]
    moderatorroles: Option<IgnoredAny>,
    /// Plugin: csv of role ids at queue time — stale by run time, dropped.
    #[serde(default)]
    #[allow(dead_code)]
    userroles: Option<IgnoredAny>,
}

impl TryFrom<EnrolUserToGroupWire> for EnrolUserToGroup {
    type Error = Invalid;

    fn try_from(w: EnrolUserToGroupWire) -> Result<Self, Invalid> {
        if w.cmid.is_none() && w.rocketchatid.is_none() {
            return Err(Invalid("needs cmid or rocketchatid".into()));
        }
        Ok(EnrolUserToGroup {
            v: check_version(w.v)?,
            userid: positive("userid", w.userid)?,
            cmid: opt_room_key("cmid", w.cmid)?,
            rocketchatid: room_id(w.rocketchatid)?,
            coursecontextid: opt_positive("coursecontextid", w.coursecontextid)?,
        })
    }
}

// ---------------------------------------------------------------- synchronize_group

/// Payload of `synchronize_group`: full convergence of one room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SynchronizeGroupWire")]
pub struct SynchronizeGroup {
    /// Payload version.
    pub v: u16,
    /// The course module whose room converges (the room lock is `room:<cmid>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmid: Option<i64>,
    /// The plugin's room id; a job with only this is resolved to cmids and re-enqueued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rocketchatid: Option<String>,
    /// The course context id, informative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coursecontextid: Option<i64>,
    /// The course id, informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub courseid: Option<i64>,
    /// Set by `reconcile_all` for its spread-out syncs (metrics and logs only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub periodic: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SynchronizeGroupWire {
    #[serde(default)]
    v: Option<u16>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    cmid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    rocketchatid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    coursecontextid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    courseid: Option<i64>,
    #[serde(default)]
    periodic: bool,
    /// Plugin: every enrolled user's full row at queue time (password hashes) — dropped.
    #[serde(default)]
    #[allow(dead_code)]
    moodlemembers: Option<IgnoredAny>,
    /// Plugin: role ids at queue time — dropped.
    #[serde(default)]
    #[allow(dead_code)]
    moderatorrolesids: Option<IgnoredAny>,
    /// Plugin: role ids at queue time — dropped.
    #[serde(default)]
    #[allow(dead_code)]
    userrolesids: Option<IgnoredAny>,
}

impl TryFrom<SynchronizeGroupWire> for SynchronizeGroup {
    type Error = Invalid;

    fn try_from(w: SynchronizeGroupWire) -> Result<Self, Invalid> {
        if w.cmid.is_none() && w.rocketchatid.is_none() {
            return Err(Invalid("needs cmid or rocketchatid".into()));
        }
        Ok(SynchronizeGroup {
            v: check_version(w.v)?,
            cmid: opt_room_key("cmid", w.cmid)?,
            rocketchatid: room_id(w.rocketchatid)?,
            coursecontextid: opt_positive("coursecontextid", w.coursecontextid)?,
            courseid: opt_positive("courseid", w.courseid)?,
            periodic: w.periodic,
        })
    }
}

// ---------------------------------------------------------------- *_user_everywhere

/// Payload of `synchronize_user_everywhere` and `unenrol_user_everywhere`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UserScopeWire")]
pub struct UserScope {
    /// Payload version.
    pub v: u16,
    /// The user.
    pub userid: i64,
    /// The Moodle username before the change (a deleted user's name is rewritten by Moodle;
    /// this finds the rooms the old name is still in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserScopeWire {
    #[serde(default)]
    v: Option<u16>,
    #[serde(deserialize_with = "lenient::id")]
    userid: i64,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    username: Option<String>,
}

impl TryFrom<UserScopeWire> for UserScope {
    type Error = Invalid;

    fn try_from(w: UserScopeWire) -> Result<Self, Invalid> {
        if w.username.as_ref().is_some_and(|u| u.len() > 255) {
            return Err(Invalid("username longer than 255 characters".into()));
        }
        Ok(UserScope {
            v: check_version(w.v)?,
            userid: positive("userid", w.userid)?,
            username: w.username,
        })
    }
}

// ---------------------------------------------------------------- restore

/// Payload of `restore`: a restored or duplicated course module (or a whole restored
/// course) must end with a room of its own holding the course's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RestoreWire")]
pub struct Restore {
    /// Payload version.
    pub v: u16,
    /// The new course module.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmid: Option<i64>,
    /// A restored course: every chat module in it (with `cmid`: informative).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub courseid: Option<i64>,
    /// The group id Moodle holds for the module (a restore or duplicate carries the
    /// original's), informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocketchatid: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreWire {
    #[serde(default)]
    v: Option<u16>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    cmid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    courseid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    rocketchatid: Option<String>,
    /// `rocketchat.id`: not needed, dropped.
    #[serde(default)]
    #[allow(dead_code)]
    instanceid: Option<IgnoredAny>,
}

impl TryFrom<RestoreWire> for Restore {
    type Error = Invalid;

    fn try_from(w: RestoreWire) -> Result<Self, Invalid> {
        if w.cmid.is_none() && w.courseid.is_none() {
            return Err(Invalid("needs cmid or courseid".into()));
        }
        Ok(Restore {
            v: check_version(w.v)?,
            cmid: opt_room_key("cmid", w.cmid)?,
            courseid: opt_positive("courseid", w.courseid)?,
            rocketchatid: room_id(w.rocketchatid)?,
        })
    }
}

// ---------------------------------------------------------------- recyclebin

/// What happened to a course module in the recycle bin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BinAction {
    /// Moved to the bin: archive the room (read-only).
    Trash,
    /// Restored from the bin: unarchive and fully re-sync.
    Restore,
    /// Purged from the bin: delete the room (only one the worker created).
    Purge,
}

impl BinAction {
    /// Lower-case name, as in the payload.
    pub const fn as_str(self) -> &'static str {
        match self {
            BinAction::Trash => "trash",
            BinAction::Restore => "restore",
            BinAction::Purge => "purge",
        }
    }
}

/// Payload of `recyclebin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RecyclebinWire")]
pub struct Recyclebin {
    /// Payload version.
    pub v: u16,
    /// What happened.
    pub action: BinAction,
    /// The binned course module (for `restore`: the old or the new one; both work).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmid: Option<i64>,
    /// The room id (the plugin's `rocketchatxrecyclebin.rocketchatid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rocketchatid: Option<String>,
    /// `tool_recyclebin_course.id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binid: Option<i64>,
    /// The course, when known (for a category-bin restore: the restored, new course).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub courseid: Option<i64>,
    /// `tool_recyclebin_category.id`: the whole course is (or was) in the category bin. Its
    /// own field because the two bins number their items independently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categorybinid: Option<i64>,
    /// The activity name (`rocketchat.name`) at binning time: a course restored from the
    /// category bin gets new modules, matched to the old rooms by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecyclebinWire {
    #[serde(default)]
    v: Option<u16>,
    action: BinAction,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    cmid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    rocketchatid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    binid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    courseid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    categorybinid: Option<i64>,
    /// Patched core event field (`rocketchat.id`); not needed, dropped.
    #[serde(default)]
    #[allow(dead_code)]
    instanceid: Option<IgnoredAny>,
    /// Bin item or activity name (change-capture triggers).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
}

impl TryFrom<RecyclebinWire> for Recyclebin {
    type Error = Invalid;

    fn try_from(w: RecyclebinWire) -> Result<Self, Invalid> {
        // A course-wide trash (a course deleted to the category bin) names only the course.
        let course_wide = w.action == BinAction::Trash && w.courseid.is_some();
        if w.cmid.is_none()
            && w.rocketchatid.is_none()
            && w.binid.is_none()
            && w.categorybinid.is_none()
            && !course_wide
        {
            return Err(Invalid(
                "needs cmid, rocketchatid, binid or categorybinid (or, for trash, courseid)".into(),
            ));
        }
        if w.name.as_ref().is_some_and(|n| n.len() > 1333) {
            return Err(Invalid(
                "name is longer than Moodle's 1333 characters".into(),
            ));
        }
        Ok(Recyclebin {
            v: check_version(w.v)?,
            action: w.action,
            cmid: opt_room_key("cmid", w.cmid)?,
            rocketchatid: room_id(w.rocketchatid)?,
            binid: opt_positive("binid", w.binid)?,
            courseid: opt_positive("courseid", w.courseid)?,
            categorybinid: opt_positive("categorybinid", w.categorybinid)?,
            name: w.name,
        })
    }
}

// ---------------------------------------------------------------- clean_history

/// Payload of `clean_history`: a course reset with mod_rocketchat's `reset_rocketchat` option
/// asks for the room's messages to be deleted (the plugin calls `rooms.cleanHistory` from
/// 1970 to the reset). A course-wide job fans out to one job per room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CleanHistoryWire")]
pub struct CleanHistory {
    /// Payload version.
    pub v: u16,
    /// The course module whose room is cleaned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmid: Option<i64>,
    /// The group id Moodle holds for the module, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocketchatid: Option<String>,
    /// The reset course (alone: every room of the course).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub courseid: Option<i64>,
    /// The reset's time (unix seconds): messages up to it are deleted, later ones are kept
    /// (`None` = when the job runs, as the plugin does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanHistoryWire {
    #[serde(default)]
    v: Option<u16>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    cmid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    rocketchatid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    courseid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    latest: Option<i64>,
}

impl TryFrom<CleanHistoryWire> for CleanHistory {
    type Error = Invalid;

    fn try_from(w: CleanHistoryWire) -> Result<Self, Invalid> {
        if w.cmid.is_none() && w.rocketchatid.is_none() && w.courseid.is_none() {
            return Err(Invalid("needs cmid, rocketchatid or courseid".into()));
        }
        Ok(CleanHistory {
            v: check_version(w.v)?,
            cmid: opt_room_key("cmid", w.cmid)?,
            rocketchatid: room_id(w.rocketchatid)?,
            courseid: opt_positive("courseid", w.courseid)?,
            latest: opt_positive("latest", w.latest)?,
        })
    }
}

// ---------------------------------------------------------------- reconcile_all

/// Payload of `reconcile_all`: every room, spread over `period_secs` from `period_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ReconcileAllWire")]
pub struct ReconcileAll {
    /// Payload version.
    pub v: u16,
    /// Start of the period (unix seconds); `None` = when the job runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_start: Option<i64>,
    /// Length of the period in seconds over which room syncs are spread (`None` = at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_secs: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileAllWire {
    #[serde(default)]
    v: Option<u16>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    period_start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_id")]
    period_secs: Option<i64>,
}

impl TryFrom<ReconcileAllWire> for ReconcileAll {
    type Error = Invalid;

    fn try_from(w: ReconcileAllWire) -> Result<Self, Invalid> {
        if let Some(p) = w.period_secs {
            if !(0..=7 * 86_400).contains(&p) {
                return Err(Invalid(format!(
                    "period_secs must be within 0..=604800, got {p}"
                )));
            }
        }
        Ok(ReconcileAll {
            v: check_version(w.v)?,
            period_start: w.period_start,
            period_secs: w.period_secs,
        })
    }
}
