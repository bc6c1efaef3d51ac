//! The bookkeeping of one pass over a room's plan: the membership as changes land, the
//! outcomes to record, and the changes that transient chat errors left for the job's retry.

use crate::outcome::{ChatFailure, Code};
use crate::planner::RoomPlan;
use crate::state::{MemberRow, Outcome};
use rcjobs_chat::{ChatError, RoomMember};
use rcjobs_metrics::{MembershipAction, MembershipFailure};
use std::collections::{BTreeMap, HashMap, HashSet};

pub(super) fn lower(s: &str) -> String {
    s.to_lowercase()
}

pub(super) fn outcome(
    subject: &str,
    userid: Option<i64>,
    code: Code,
    detail: impl Into<String>,
) -> Outcome {
    Outcome {
        subject: subject.to_owned(),
        userid,
        code: code.as_str().to_owned(),
        detail: detail.into(),
    }
}

/// A per-user change of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Kick,
    Revoke,
    Grant,
}

impl Change {
    pub(super) fn action(self) -> MembershipAction {
        match self {
            Change::Kick => MembershipAction::Kick,
            Change::Revoke => MembershipAction::Demote,
            Change::Grant => MembershipAction::Promote,
        }
    }
}

/// Changes that transient chat errors left undone after the in-handler retries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    pub kicks: usize,
    pub revokes: usize,
    pub invites: usize,
    pub grants: usize,
    /// The listing that confirms invites (account creation on) could not be read.
    pub invite_checks: usize,
}

impl Pending {
    pub(super) fn total(&self) -> usize {
        self.kicks + self.revokes + self.invites + self.grants + self.invite_checks
    }

    /// E.g. `2 kicks, 31 moderator grants` (for the job's error message).
    pub(super) fn describe(&self) -> String {
        [
            (self.kicks, "kick"),
            (self.revokes, "moderator revoke"),
            (self.invites, "invite"),
            (self.grants, "moderator grant"),
            (self.invite_checks, "invite check"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
    }

    fn count(&mut self, change: Change) {
        match change {
            Change::Kick => self.kicks += 1,
            Change::Revoke => self.revokes += 1,
            Change::Grant => self.grants += 1,
        }
    }
}

/// One pass of changes over a room.
pub(super) struct Pass {
    pub room_id: String,
    /// Moodle user id of each desired member, by lower-case username.
    pub userid_of: HashMap<String, i64>,
    /// The room's membership (lower-case username) as the changes are applied.
    pub live: BTreeMap<String, MemberRow>,
    pub outcomes: Vec<Outcome>,
    /// Invitees without a usable account (recorded): nothing more is tried for them.
    pub missing: HashSet<String>,
    /// Invitees a transient failure kept out: their grants wait with them.
    pub not_added: HashSet<String>,
    pub pending: Pending,
    pub attempted: usize,
    pub applied: usize,
    pub forbidden: usize,
}

impl Pass {
    /// A pass over `plan` for a room listed as `current`; `outcomes` are the problems found
    /// before any change (invalid usernames).
    pub(super) fn new(
        room_id: String,
        plan: &RoomPlan,
        current: &[RoomMember],
        outcomes: Vec<Outcome>,
    ) -> Pass {
        let userid_of: HashMap<String, i64> = plan
            .desired
            .iter()
            .map(|d| (lower(&d.username), d.userid))
            .collect();
        let live = current
            .iter()
            .map(|m| {
                let k = lower(&m.username);
                let row = MemberRow {
                    username: k.clone(),
                    userid: userid_of.get(&k).copied(),
                    moderator: m.moderator,
                };
                (k, row)
            })
            .collect();
        Pass {
            room_id,
            userid_of,
            live,
            outcomes,
            missing: HashSet::new(),
            not_added: HashSet::new(),
            pending: Pending::default(),
            attempted: 0,
            applied: 0,
            forbidden: 0,
        }
    }

    /// Records an outcome for `subject` unless it already has one: the outcome table holds
    /// one row per subject, and the first problem found is the one to fix first.
    pub(super) fn note(&mut self, subject: &str, code: Code, detail: impl Into<String>) {
        let k = lower(subject);
        if self.outcomes.iter().any(|o| lower(&o.subject) == k) {
            return;
        }
        let userid = self.userid_of.get(&k).copied();
        self.outcomes.push(outcome(subject, userid, code, detail));
    }

    /// `change` of `username` was applied.
    pub(super) fn done(&mut self, change: Change, username: &str) {
        self.applied += 1;
        let k = lower(username);
        match change {
            Change::Kick => {
                self.live.remove(&k);
            }
            Change::Revoke | Change::Grant => {
                if let Some(m) = self.live.get_mut(&k) {
                    m.moderator = change == Change::Grant;
                }
            }
        }
    }

    /// `change` of `username` still failed transiently after its retries: left for the
    /// job's retry, and recorded meanwhile.
    pub(super) fn left(&mut self, change: Change, username: &str, e: &ChatError) {
        self.pending.count(change);
        self.note(
            username,
            Code::ChangePending,
            format!(
                "{}: {e} (left for the job's retry)",
                change.action().as_str()
            ),
        );
    }

    /// `usernames` could not be added (`call` still failed transiently after its retries).
    pub(super) fn not_added_all(&mut self, usernames: &[String], call: &str, e: &ChatError) {
        for u in usernames {
            if self.not_added.insert(lower(u)) {
                self.pending.invites += 1;
                self.note(
                    u,
                    Code::ChangePending,
                    format!("{call}: {e} (left for the job's retry)"),
                );
            }
        }
    }

    /// The chat server refused `change` of `username` (`e`, of class `class`): recorded, not
    /// retried. Returns the metric's reason.
    pub(super) fn refused(
        &mut self,
        change: Change,
        username: &str,
        class: &ChatFailure,
        e: &ChatError,
    ) -> MembershipFailure {
        let (code, why) = class.refusal();
        if *class == ChatFailure::Forbidden {
            self.forbidden += 1;
        }
        self.note(username, code, format!("{}: {e}", change.action().as_str()));
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> ChatError {
        ChatError::Transient {
            endpoint: "groups.kick".into(),
            message: "500".into(),
        }
    }

    fn pass(current: &[(&str, bool)]) -> Pass {
        let current: Vec<RoomMember> = current
            .iter()
            .map(|(u, m)| RoomMember {
                user_id: format!("id-{u}"),
                username: (*u).to_owned(),
                moderator: *m,
                owner: false,
            })
            .collect();
        Pass::new("r".into(), &RoomPlan::default(), &current, Vec::new())
    }

    #[test]
    fn pending_changes_are_counted_and_described() {
        let mut p = pass(&[("a", false), ("b", true), ("c", false)]);
        p.left(Change::Kick, "a", &transient());
        p.left(Change::Grant, "c", &transient());
        p.not_added_all(
            &["x".into(), "y".into(), "X".into()],
            "groups.invite",
            &transient(),
        );
        p.left(Change::Grant, "x", &transient());
        assert_eq!(p.pending.total(), 5);
        assert_eq!(
            p.pending.describe(),
            "1 kick, 2 invites, 2 moderator grants"
        );
        // One outcome per user: x's grant waits with its invite.
        let subjects: Vec<&str> = p.outcomes.iter().map(|o| o.subject.as_str()).collect();
        assert_eq!(subjects, ["a", "c", "x", "y"]);
        assert!(p.outcomes.iter().all(|o| o.code == "change_pending"));
        // A pending kick leaves the member in the recorded membership.
        assert!(p.live.contains_key("a"));
        assert_eq!(p.applied, 0);
    }

    #[test]
    fn applied_changes_update_the_membership() {
        let mut p = pass(&[("a", false), ("B", true), ("c", false)]);
        p.done(Change::Kick, "a");
        p.done(Change::Revoke, "b");
        p.done(Change::Grant, "C");
        assert_eq!(p.applied, 3);
        assert!(!p.live.contains_key("a"));
        assert!(!p.live["b"].moderator);
        assert!(p.live["c"].moderator);
        assert_eq!(p.pending, Pending::default());
        assert_eq!(p.pending.describe(), "");
    }
}
