//! Moodle's truth computed with the test's own SQL (moodle.md §3), independent of
//! `rcjobs-moodle`, checked against the simulator's rooms: the judge of the convergence
//! tests. A visible activity's room must hold exactly the users with a member or moderator
//! role on its context path and an active enrolment in its course (user neither deleted nor
//! suspended, enrolment and instance enabled, inside its time window), moderators flagged.

use rcjobs_sim::SimHandle;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};

/// cmid → lower-cased username → moderator, for every live, visible chat activity.
pub async fn moodle_truth(pool: &PgPool) -> BTreeMap<i64, BTreeMap<String, bool>> {
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<(i64, Option<String>, Option<bool>)> = sqlx::query_as(
        "WITH cm AS (
           SELECT cm.id, cm.course, ctx.path,
                  string_to_array(replace(coalesce(r.moderatorroles, ''), ' ', ''), ',') AS mods,
                  string_to_array(replace(coalesce(r.userroles, ''), ' ', ''), ',') AS users
             FROM mdl_course_modules cm
             JOIN mdl_modules m ON m.id = cm.module AND m.name = 'rocketchat'
             JOIN mdl_rocketchat r ON r.id = cm.instance
             JOIN mdl_context ctx ON ctx.contextlevel = 70 AND ctx.instanceid = cm.id
            WHERE cm.deletioninprogress = 0 AND cm.visible = 1 AND cm.visibleoncoursepage = 1)
         SELECT cm.id, lower(u.username), bool_or(ra.roleid::text = ANY (cm.mods))
           FROM cm
           LEFT JOIN mdl_role_assignments ra
             ON ra.contextid::text = ANY (string_to_array(btrim(cm.path, '/'), '/'))
            AND (ra.roleid::text = ANY (cm.mods) OR ra.roleid::text = ANY (cm.users))
            AND EXISTS (SELECT 1 FROM mdl_user_enrolments ue JOIN mdl_enrol e ON e.id = ue.enrolid
                         WHERE e.courseid = cm.course AND ue.userid = ra.userid
                           AND ue.status = 0 AND e.status = 0
                           AND ue.timestart <= $1 AND (ue.timeend = 0 OR ue.timeend > $1))
           LEFT JOIN mdl_user u ON u.id = ra.userid AND u.deleted = 0 AND u.suspended = 0
          GROUP BY cm.id, lower(u.username)",
    )
    .bind(now)
    .fetch_all(pool)
    .await
    .expect("moodle truth");
    let mut out: BTreeMap<i64, BTreeMap<String, bool>> = BTreeMap::new();
    for (cmid, user, moderator) in rows {
        let room = out.entry(cmid).or_default();
        if let Some(u) = user {
            room.insert(u, moderator.unwrap_or(false));
        }
    }
    out
}

/// Differences between Moodle's truth and the chat server.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Visible activities compared.
    pub rooms: usize,
    /// Of those, without a room on the chat server.
    pub rooms_missing: usize,
    /// Memberships (user, room) wrong: missing, extra, or the moderator flag.
    pub members_wrong: usize,
    /// Memberships Moodle wants in total.
    pub desired: usize,
    /// A few examples.
    pub examples: Vec<String>,
}

impl Diff {
    /// All mismatches.
    pub fn total(&self) -> usize {
        self.rooms_missing + self.members_wrong
    }
}

/// Compares every visible activity's room (found through the worker's `rcjobs_sync.room`)
/// with Moodle's truth. `bot` is never counted as extra.
pub async fn diff(pool: &PgPool, sim: &SimHandle, bot: &str) -> Diff {
    let truth = moodle_truth(pool).await;
    let rooms: HashMap<i64, String> = sqlx::query_as::<_, (i64, Option<String>)>(
        "SELECT cmid, room_id FROM rcjobs_sync.room WHERE state = 'active'",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default()
    .into_iter()
    .filter_map(|(c, r)| r.map(|r| (c, r)))
    .collect();
    let snap = sim.snapshot();
    let bot = bot.to_lowercase();
    let mut d = Diff::default();
    for (cmid, want) in &truth {
        d.rooms += 1;
        d.desired += want.len();
        let Some(room) = rooms
            .get(cmid)
            .and_then(|id| snap.rooms.iter().find(|r| &r.id == id))
        else {
            d.rooms_missing += 1;
            note(&mut d, format!("cm {cmid}: no room"));
            continue;
        };
        let have: BTreeMap<String, bool> = room
            .members
            .iter()
            .map(|m| {
                (
                    m.username.to_lowercase(),
                    m.roles.iter().any(|r| r == "moderator"),
                )
            })
            .filter(|(u, _)| *u != bot)
            .collect();
        for (u, m) in want {
            match have.get(u) {
                None => {
                    d.members_wrong += 1;
                    note(&mut d, format!("cm {cmid}: {u} missing"));
                }
                Some(h) if h != m => {
                    d.members_wrong += 1;
                    note(&mut d, format!("cm {cmid}: {u} moderator {h}, want {m}"));
                }
                Some(_) => {}
            }
        }
        for u in have.keys().filter(|u| !want.contains_key(*u)) {
            d.members_wrong += 1;
            note(&mut d, format!("cm {cmid}: {u} extra"));
        }
    }
    d
}

fn note(d: &mut Diff, s: String) {
    if d.examples.len() < 10 {
        d.examples.push(s);
    }
}
