//! The comparator: Moodle's desired membership of every chat activity (through the read-only
//! model and the worker's username mapping) against the chat server's rooms (the simulator's
//! snapshot, which costs no API call, or `list_members` on a real server) → mismatches.
//!
//! Rules, the same as the worker's (`docs/handlers.md`): usernames compare case-insensitively;
//! the bot and room owners the worker did not make are never counted as extra; a hidden
//! activity whose room is archived is left as it is by design and reported, not compared.

use super::chat::ChatServer;
use anyhow::Context;
use rcjobs_chat::ChatBackend;
use rcjobs_moodle::{MoodleDb, Room};
use rcjobs_worker::{SyncState, UsernameMapping};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// What Moodle wants for one chat activity.
#[derive(Debug, Clone)]
pub struct RoomTruth {
    /// Course module id.
    pub cmid: i64,
    /// Activity visible to students (hidden ones are archived by the worker).
    pub visible: bool,
    /// Chat room id, once the worker has one for the module.
    pub room_id: Option<String>,
    /// Lower-cased chat username → moderator.
    pub desired: BTreeMap<String, bool>,
}

/// One chat room as the comparator sees it.
#[derive(Debug, Clone, Default)]
pub struct ChatRoom {
    /// Archived flag.
    pub archived: bool,
    /// Lower-cased username → (moderator, owner); inactive accounts left out (Rocket.Chat
    /// does not list them either).
    pub members: HashMap<String, (bool, bool)>,
}

/// The result of one comparison.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Mismatches {
    /// Chat activities compared.
    pub rooms_compared: u64,
    /// Of those, rooms that equal Moodle.
    pub rooms_converged: u64,
    /// Activities with no chat room yet (or whose room is missing on the server).
    pub rooms_missing: u64,
    /// Hidden activities whose room is archived: not compared (the worker leaves them).
    pub rooms_archived_skipped: u64,
    /// Desired members not in their room.
    pub missing_members: u64,
    /// Room members Moodle does not want (bot and owners excluded).
    pub extra_members: u64,
    /// Desired members whose moderator flag differs.
    pub wrong_moderator: u64,
    /// Up to ten examples, for the operator.
    pub examples: Vec<String>,
}

impl Mismatches {
    /// Every difference counted (missing rooms count once each).
    pub fn total(&self) -> u64 {
        self.rooms_missing + self.missing_members + self.extra_members + self.wrong_moderator
    }

    fn example(&mut self, s: String) {
        if self.examples.len() < 10 {
            self.examples.push(s);
        }
    }
}

/// Desired-state reader and chat-state reader for one run.
pub struct Comparator {
    moodle: MoodleDb,
    state: SyncState,
    mapping: UsernameMapping,
    bot: String,
}

impl Comparator {
    /// A comparator reading Moodle through `moodle`, the worker's room mapping through
    /// `state`, mapping usernames like the worker with `mapping`.
    pub fn new(
        moodle: MoodleDb,
        state: SyncState,
        mapping: UsernameMapping,
        bot: &str,
    ) -> Comparator {
        Comparator {
            moodle,
            state,
            mapping,
            bot: bot.to_lowercase(),
        }
    }

    /// Reads Moodle's desired state for `rooms` now.
    pub async fn truth(&self, rooms: &[Room]) -> anyhow::Result<Vec<RoomTruth>> {
        let now = rcjobs_moodle::unix_now();
        let mut out = Vec::with_capacity(rooms.len());
        for r in rooms {
            let mut desired = BTreeMap::new();
            for m in self
                .moodle
                .desired_members(r, now)
                .await
                .context("desired membership")?
            {
                // Unmappable usernames cannot be in any room; the worker records them.
                if let Ok(u) = self.mapping.map(&m.username) {
                    *desired.entry(u.to_lowercase()).or_insert(false) |= m.moderator;
                }
            }
            out.push(RoomTruth {
                cmid: r.cmid,
                visible: r.visible,
                room_id: None,
                desired,
            });
        }
        self.resolve_rooms(&mut out).await?;
        Ok(out)
    }

    /// Fills in room ids the worker has recorded since the last call.
    pub async fn resolve_rooms(&self, truths: &mut [RoomTruth]) -> anyhow::Result<()> {
        for t in truths.iter_mut().filter(|t| t.room_id.is_none()) {
            if let Some(rec) = self.state.room(t.cmid).await? {
                t.room_id = rec.room_id;
            }
        }
        Ok(())
    }

    /// The chat side of `truths`' rooms: from the simulator's snapshot, or with one
    /// `groups.info` + `groups.members` per room on a real server.
    pub async fn chat_rooms(
        &self,
        chat: &ChatServer,
        backend: Option<&dyn ChatBackend>,
        truths: &[RoomTruth],
    ) -> anyhow::Result<HashMap<String, ChatRoom>> {
        let mut out = HashMap::new();
        if let Some(snap) = chat.snapshot() {
            let wanted: std::collections::HashSet<&str> =
                truths.iter().filter_map(|t| t.room_id.as_deref()).collect();
            for r in snap
                .rooms
                .into_iter()
                .filter(|r| wanted.contains(r.id.as_str()))
            {
                let members = r
                    .members
                    .iter()
                    .filter(|m| m.active)
                    .map(|m| {
                        let has = |role: &str| m.roles.iter().any(|x| x == role);
                        (m.username.to_lowercase(), (has("moderator"), has("owner")))
                    })
                    .collect();
                out.insert(
                    r.id,
                    ChatRoom {
                        archived: r.archived,
                        members,
                    },
                );
            }
            return Ok(out);
        }
        let backend = backend.context("a real chat server needs a backend to compare")?;
        for id in truths.iter().filter_map(|t| t.room_id.as_deref()) {
            let Some(room) = backend.room_by_id(id).await? else {
                continue;
            };
            let members = backend
                .list_members(id)
                .await?
                .into_iter()
                .map(|m| (m.username.to_lowercase(), (m.moderator, m.owner)))
                .collect();
            out.insert(
                id.to_owned(),
                ChatRoom {
                    archived: room.archived,
                    members,
                },
            );
        }
        Ok(out)
    }

    /// Compares `truths` with `rooms`.
    pub fn compare(&self, truths: &[RoomTruth], rooms: &HashMap<String, ChatRoom>) -> Mismatches {
        let mut m = Mismatches::default();
        for t in truths {
            let Some(room) = t.room_id.as_ref().and_then(|id| rooms.get(id)) else {
                m.rooms_compared += 1;
                m.rooms_missing += 1;
                m.example(format!("cm {}: no chat room yet", t.cmid));
                continue;
            };
            if !t.visible && room.archived {
                m.rooms_archived_skipped += 1;
                continue;
            }
            m.rooms_compared += 1;
            let before = m.total();
            for (user, &moderator) in &t.desired {
                match room.members.get(user) {
                    None => {
                        m.missing_members += 1;
                        m.example(format!("cm {}: {user} missing", t.cmid));
                    }
                    Some(&(is_mod, _)) if is_mod != moderator && *user != self.bot => {
                        m.wrong_moderator += 1;
                        m.example(format!(
                            "cm {}: {user} moderator={is_mod}, Moodle says {moderator}",
                            t.cmid
                        ));
                    }
                    Some(_) => {}
                }
            }
            for (user, &(_, owner)) in &room.members {
                if !t.desired.contains_key(user) && *user != self.bot && !owner {
                    m.extra_members += 1;
                    m.example(format!("cm {}: {user} should not be a member", t.cmid));
                }
            }
            if m.total() == before {
                m.rooms_converged += 1;
            }
        }
        m
    }
}
