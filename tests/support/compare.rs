//! Moodle's desired membership of every live chat activity against the simulator's rooms,
//! with the same rules as the harness comparator in `src/harness/compare.rs` (which lives in
//! the binary, out of reach of integration tests): usernames compare case-insensitively
//! through the identity mapping; the bot and owners the worker did not make are never extra;
//! a hidden activity whose room is archived is not compared.

use rcjobs_moodle::MoodleDb;
use rcjobs_sim::SimHandle;
use rcjobs_worker::{SyncState, UsernameMapping};
use std::collections::{BTreeMap, HashMap};

/// Differences found by one comparison.
#[derive(Debug, Default, Clone)]
pub struct Mismatches {
    /// Activities compared.
    pub rooms: u64,
    /// Activities with no room (yet).
    pub rooms_missing: u64,
    /// Desired members not in the room.
    pub missing_members: u64,
    /// Members Moodle does not want.
    pub extra_members: u64,
    /// Moderator flag differs.
    pub wrong_moderator: u64,
    /// Visible activities whose room is archived (a restore or un-hide that did not land).
    pub wrongly_archived: u64,
    /// Desired memberships compared in total.
    pub desired_members: u64,
    /// A few examples.
    pub examples: Vec<String>,
}

impl Mismatches {
    /// Every difference.
    pub fn total(&self) -> u64 {
        self.rooms_missing
            + self.missing_members
            + self.extra_members
            + self.wrong_moderator
            + self.wrongly_archived
    }

    fn note(&mut self, s: String) {
        if self.examples.len() < 10 {
            self.examples.push(s);
        }
    }
}

/// Compares every live chat activity of `moodle` with the simulator now. `bot` is the
/// worker's chat username.
pub async fn compare(
    moodle: &MoodleDb,
    state: &SyncState,
    sim: &SimHandle,
    bot: &str,
) -> Mismatches {
    let mapping = UsernameMapping::new(&[]).expect("identity mapping");
    let now = rcjobs_moodle::unix_now();
    let bot = bot.to_lowercase();
    let snap = sim.snapshot();
    let rooms_by_id: HashMap<&str, &rcjobs_sim::RoomSnapshot> =
        snap.rooms.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut m = Mismatches::default();
    let mut after = None;
    loop {
        let page = moodle.rooms_page(after, 500).await.expect("rooms page");
        let Some(last) = page.last() else { break };
        after = Some(last.cmid);
        for room in &page {
            m.rooms += 1;
            let mut desired: BTreeMap<String, bool> = BTreeMap::new();
            for d in moodle
                .desired_members(room, now)
                .await
                .expect("desired members")
            {
                if let Ok(u) = mapping.map(&d.username) {
                    *desired.entry(u.to_lowercase()).or_insert(false) |= d.moderator;
                }
            }
            let rec = state.room(room.cmid).await.expect("sync state");
            let Some(chat) = rec
                .and_then(|r| r.room_id)
                .and_then(|id| rooms_by_id.get(id.as_str()).copied())
            else {
                m.rooms_missing += 1;
                m.note(format!("cm {}: no chat room", room.cmid));
                continue;
            };
            if !room.visible && chat.archived {
                continue;
            }
            if room.visible && !room.deletion_in_progress && chat.archived {
                m.wrongly_archived += 1;
                m.note(format!(
                    "cm {}: visible activity but its room is archived",
                    room.cmid
                ));
            }
            m.desired_members += desired.len() as u64;
            let members: HashMap<String, (bool, bool)> = chat
                .members
                .iter()
                .filter(|x| x.active)
                .map(|x| {
                    let has = |r: &str| x.roles.iter().any(|y| y == r);
                    (x.username.to_lowercase(), (has("moderator"), has("owner")))
                })
                .collect();
            for (user, &moderator) in &desired {
                match members.get(user) {
                    None => {
                        m.missing_members += 1;
                        m.note(format!("cm {}: {user} missing", room.cmid));
                    }
                    Some(&(is_mod, _)) if is_mod != moderator && *user != bot => {
                        m.wrong_moderator += 1;
                        m.note(format!(
                            "cm {}: {user} moderator={is_mod}, Moodle says {moderator}",
                            room.cmid
                        ));
                    }
                    Some(_) => {}
                }
            }
            for (user, &(_, owner)) in &members {
                if !desired.contains_key(user) && *user != bot && !owner {
                    m.extra_members += 1;
                    m.note(format!("cm {}: {user} should not be a member", room.cmid));
                }
            }
        }
    }
    m
}
