//! mod_rocketchat's call pattern, as the baseline: for each user, sequentially, one
//! `users.info` (to find the user id) then one `groups.invite` of that one user
//! (`docs/mod_rocketchat.md` §3.3). Run against the same server as rcjobs, into a fresh room.

use anyhow::Context;
use rcjobs_rocketchat::{Invitees, RocketChatClient};
use std::time::{Duration, Instant};

/// One measured run of the pattern.
#[derive(Debug, Clone)]
pub struct PluginRun {
    /// Wall time of the per-user loop (room creation excluded).
    pub elapsed: Duration,
    /// The room the users went into.
    pub room_id: String,
}

/// Creates room `room_name` and invites `usernames` one at a time the way the plugin does.
pub async fn run(
    client: &RocketChatClient,
    room_name: &str,
    usernames: &[String],
) -> anyhow::Result<PluginRun> {
    let room = client
        .groups_create(room_name, false, &[])
        .await
        .context("creating the baseline room")?;
    let started = Instant::now();
    for u in usernames {
        let user = client
            .users_info_by_username(u)
            .await
            .with_context(|| format!("users.info {u}"))?;
        client
            .groups_invite(&room.id, Invitees::UserId(&user.id))
            .await
            .with_context(|| format!("groups.invite {u}"))?;
    }
    Ok(PluginRun {
        elapsed: started.elapsed(),
        room_id: room.id,
    })
}
