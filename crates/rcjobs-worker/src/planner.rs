//! The room planner: desired members (Moodle, mapped usernames) × current members (chat)
//! → the smallest set of changes, as a pure function.
//!
//! Decisions (see `docs/handlers.md`):
//! * Usernames compare case-insensitively (chat servers treat them so); changes use the
//!   spelling the chat server reports for existing members and the mapped one for invites.
//! * The bot is never kicked and never demoted.
//! * Room **owners** that Moodle does not want are kept, not kicked: the worker never grants
//!   owner, so an owner is the room's creator (the bot, or a person who created the room in
//!   the chat UI or through the plugin's admin account). They are reported as kept.
//! * Everyone else who is not desired is kicked (people added by hand in the chat are
//!   removed, unlike the plugin: Moodle is the source of truth).
//! * Moderator flags follow Moodle in both directions for desired members.

use rcjobs_chat::RoomMember;
use std::collections::BTreeMap;

/// A user Moodle wants in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMember {
    /// Moodle user id (to remember who converged where).
    pub userid: i64,
    /// Chat username, after mapping.
    pub username: String,
    /// Holds a moderator role for this module.
    pub moderator: bool,
}

/// Why a member that Moodle does not want stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepReason {
    /// The worker's own account.
    Bot,
    /// A room owner the worker did not make.
    Owner,
}

/// The changes that converge one room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomPlan {
    /// Usernames to add (one batch call per few hundred).
    pub invite: Vec<String>,
    /// Usernames to make moderator (after they are members).
    pub grant_moderator: Vec<String>,
    /// Usernames to demote to plain member.
    pub revoke_moderator: Vec<String>,
    /// Usernames to remove.
    pub kick: Vec<String>,
    /// Members Moodle does not want that stay, with the reason.
    pub kept: Vec<(String, KeepReason)>,
    /// Desired members after merging usernames that map to the same chat account (a
    /// moderator role on either Moodle account wins).
    pub desired: Vec<DesiredMember>,
}

impl RoomPlan {
    /// Number of membership changes (calls are fewer: invites are batched).
    pub fn change_count(&self) -> usize {
        self.invite.len()
            + self.grant_moderator.len()
            + self.revoke_moderator.len()
            + self.kick.len()
    }

    /// True when the room already matches Moodle.
    pub fn is_empty(&self) -> bool {
        self.change_count() == 0
    }
}

fn key(username: &str) -> String {
    username.to_lowercase()
}

/// Plans the changes that make `current` equal `desired`, keeping `bot`.
pub fn plan_room(desired: &[DesiredMember], current: &[RoomMember], bot: &str) -> RoomPlan {
    let mut want: BTreeMap<String, DesiredMember> = BTreeMap::new();
    for d in desired {
        want.entry(key(&d.username))
            .and_modify(|e| e.moderator |= d.moderator)
            .or_insert_with(|| d.clone());
    }
    let have: BTreeMap<String, &RoomMember> =
        current.iter().map(|m| (key(&m.username), m)).collect();
    let bot_key = key(bot);
    let mut plan = RoomPlan::default();

    for (k, d) in &want {
        match have.get(k) {
            Some(m) => {
                if d.moderator && !m.moderator {
                    plan.grant_moderator.push(m.username.clone());
                } else if !d.moderator && m.moderator && *k != bot_key {
                    plan.revoke_moderator.push(m.username.clone());
                }
            }
            None => {
                plan.invite.push(d.username.clone());
                if d.moderator {
                    plan.grant_moderator.push(d.username.clone());
                }
            }
        }
    }
    for (k, m) in &have {
        if want.contains_key(k) {
            continue;
        }
        if *k == bot_key {
            plan.kept.push((m.username.clone(), KeepReason::Bot));
        } else if m.owner {
            plan.kept.push((m.username.clone(), KeepReason::Owner));
        } else {
            plan.kick.push(m.username.clone());
        }
    }
    plan.desired = want.into_values().collect();
    plan
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn d(u: &str, moderator: bool) -> DesiredMember {
        DesiredMember {
            userid: 1,
            username: u.into(),
            moderator,
        }
    }

    fn m(u: &str, moderator: bool, owner: bool) -> RoomMember {
        RoomMember {
            user_id: format!("id-{u}"),
            username: u.into(),
            moderator,
            owner,
        }
    }

    #[test]
    fn empty_room_invites_everyone_and_grants_moderators() {
        let p = plan_room(
            &[d("t1", true), d("s1", false)],
            &[m("bot", false, true)],
            "bot",
        );
        assert_eq!(p.invite, vec!["s1", "t1"]);
        assert_eq!(p.grant_moderator, vec!["t1"]);
        assert!(p.kick.is_empty());
        assert_eq!(p.kept, vec![("bot".to_string(), KeepReason::Bot)]);
    }

    #[test]
    fn kicks_strangers_but_not_bot_or_owners() {
        let p = plan_room(
            &[d("s1", false)],
            &[
                m("bot", true, true),
                m("s1", false, false),
                m("intruder", false, false),
                m("creator", true, true),
            ],
            "bot",
        );
        assert_eq!(p.kick, vec!["intruder"]);
        assert!(p.invite.is_empty());
        assert_eq!(
            p.kept,
            vec![
                ("bot".to_string(), KeepReason::Bot),
                ("creator".to_string(), KeepReason::Owner)
            ]
        );
    }

    #[test]
    fn moderator_changes_both_ways_and_bot_never_demoted() {
        let p = plan_room(
            &[d("a", true), d("b", false), d("bot", false)],
            &[
                m("a", false, false),
                m("b", true, false),
                m("bot", true, true),
            ],
            "bot",
        );
        assert_eq!(p.grant_moderator, vec!["a"]);
        assert_eq!(p.revoke_moderator, vec!["b"]);
        assert!(p.kick.is_empty() && p.invite.is_empty());
    }

    #[test]
    fn case_insensitive_and_merged_duplicates() {
        let p = plan_room(
            &[d("Alice", false), d("alice", true)],
            &[m("ALICE", false, false)],
            "Bot",
        );
        assert_eq!(p.grant_moderator, vec!["ALICE"]);
        assert_eq!(p.desired.len(), 1);
        assert!(p.desired[0].moderator);
    }

    #[test]
    fn converged_room_has_empty_plan() {
        let p = plan_room(
            &[d("a", true), d("b", false)],
            &[m("a", true, false), m("b", false, false)],
            "bot",
        );
        assert!(p.is_empty());
    }

    proptest! {
        /// Applying the plan to the current state yields exactly desired ∪ {bot, owners}
        /// with Moodle's moderator flags.
        #[test]
        fn applying_the_plan_converges(
            want in proptest::collection::btree_map("[a-e]{1,2}", any::<bool>(), 0..12),
            have in proptest::collection::btree_map("[a-e]{1,2}", (any::<bool>(), any::<bool>()), 0..12),
        ) {
            let desired: Vec<_> = want.iter().map(|(u, md)| d(u, *md)).collect();
            let current: Vec<_> = have.iter().map(|(u, (md, o))| m(u, *md, *o)).collect();
            let p = plan_room(&desired, &current, "bot");
            let mut state: BTreeMap<String, bool> = have.iter().map(|(u, (md, _))| (u.clone(), *md)).collect();
            for u in &p.invite { prop_assert!(state.insert(u.clone(), false).is_none()); }
            for u in &p.grant_moderator { state.insert(u.clone(), true); }
            for u in &p.revoke_moderator { state.insert(u.clone(), false); }
            for u in &p.kick { prop_assert!(state.remove(u).is_some()); }
            let owners: BTreeSet<_> = have.iter().filter(|(_, (_, o))| *o).map(|(u, _)| u.clone()).collect();
            for (u, md) in &want { prop_assert_eq!(state.get(u), Some(md)); }
            for u in state.keys() { prop_assert!(want.contains_key(u) || owners.contains(u) || u == "bot"); }
        }
    }
}
