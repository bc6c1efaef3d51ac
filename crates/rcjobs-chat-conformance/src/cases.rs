//! The conformance cases. Each takes a fresh [`Fixture`] and panics with a message naming
//! the broken rule.

use std::collections::HashSet;

use chrono::Utc;
use rcjobs_chat::{ChatBackend, ChatError, NewChatUser, NewRoom, Room, RoomMember};

use crate::Fixture;

fn lower(s: &str) -> String {
    s.to_lowercase()
}

async fn new_room<F: Fixture>(f: &F, read_only: bool) -> Room {
    let name = f.unique("ct.room");
    f.backend()
        .create_room(&NewRoom {
            name,
            read_only,
            retention_days: None,
        })
        .await
        .expect("create_room")
}

async fn members<F: Fixture>(f: &F, room: &Room) -> Vec<RoomMember> {
    f.backend()
        .list_members(&room.id)
        .await
        .expect("list_members")
}

async fn member_names<F: Fixture>(f: &F, room: &Room) -> HashSet<String> {
    members(f, room)
        .await
        .iter()
        .map(|m| lower(&m.username))
        .collect()
}

async fn member<F: Fixture>(f: &F, room: &Room, username: &str) -> Option<RoomMember> {
    members(f, room)
        .await
        .into_iter()
        .find(|m| lower(&m.username) == lower(username))
}

async fn reread<F: Fixture>(f: &F, room: &Room) -> Room {
    f.backend()
        .room_by_id(&room.id)
        .await
        .expect("room_by_id")
        .expect("the room exists")
}

/// `create_user` makes an active account `find_user` finds; a second one of that name is a
/// `Conflict`; an unknown name is `Ok(None)`.
pub async fn create_user_then_find<F: Fixture>(f: &F) {
    let b = f.backend();
    let username = f.unique("ct.new");
    let new = NewChatUser {
        username: username.clone(),
        name: "Conformance Tester".into(),
        email: format!("{username}@example.edu"),
        password: "Pw-0123456789-abcdef".into(),
    };
    let created = b.create_user(&new).await.expect("create_user");
    assert_eq!(lower(&created.username), lower(&username));
    assert!(created.active);
    let found = b
        .find_user(&username)
        .await
        .expect("find_user")
        .expect("found");
    assert_eq!(found.id, created.id);
    assert!(found.active);
    match b.create_user(&new).await {
        Err(ChatError::Conflict { .. }) => {}
        other => panic!("a second create_user of {username} must be a Conflict: {other:?}"),
    }
    let ghost = f.unique("ct.ghost");
    assert_eq!(b.find_user(&ghost).await.expect("find_user"), None);
}

/// A created room is found by name and by id, with its settings; a taken name is a
/// `Conflict`; unknown names and ids are `Ok(None)`.
pub async fn rooms_by_name_and_id<F: Fixture>(f: &F) {
    let b = f.backend();
    let room = new_room(f, false).await;
    assert!(!room.archived && !room.read_only, "{room:?}");
    let by_name = b
        .room_by_name(&room.name)
        .await
        .expect("room_by_name")
        .expect("found by name");
    assert_eq!(by_name.id, room.id);
    let by_id = reread(f, &room).await;
    assert_eq!(by_id.name, room.name);
    assert!(!by_id.archived && !by_id.read_only, "{by_id:?}");
    match b
        .create_room(&NewRoom {
            name: room.name.clone(),
            read_only: false,
            retention_days: None,
        })
        .await
    {
        Err(ChatError::Conflict { .. }) => {}
        other => panic!(
            "a second room named {} must be a Conflict: {other:?}",
            room.name
        ),
    }
    assert_eq!(
        b.room_by_name(&f.unique("ct.none"))
            .await
            .expect("room_by_name"),
        None
    );
    let ro = new_room(f, true).await;
    assert!(ro.read_only);
    assert!(reread(f, &ro).await.read_only, "created read-only");
    // An id of the backend's shape that names no room.
    let gone = new_room(f, false).await;
    b.delete_room(&gone.id).await.expect("delete_room");
    assert_eq!(b.room_by_id(&gone.id).await.expect("room_by_id"), None);
}

/// Adding members twice, or adding members already in, is fine and converges; the bot is a
/// member and owner of the rooms it creates.
pub async fn idempotent_adds<F: Fixture>(f: &F) {
    let b = f.backend();
    let users = f.seed_users("ct.add", 3).await;
    let room = new_room(f, false).await;
    let bot = member(f, &room, b.bot_username())
        .await
        .expect("the bot is a member of its room");
    assert!(bot.owner, "the bot owns the rooms it creates: {bot:?}");
    let first = b
        .add_members(&room.id, &users[..2])
        .await
        .expect("add_members");
    assert!(first.unknown.is_empty(), "{first:?}");
    let again = b
        .add_members(&room.id, &users)
        .await
        .expect("add_members again");
    assert!(again.unknown.is_empty(), "{again:?}");
    assert!(b
        .add_members(&room.id, &users)
        .await
        .expect("third add")
        .unknown
        .is_empty());
    let names = member_names(f, &room).await;
    for u in &users {
        assert!(names.contains(&lower(u)), "{u} is a member: {names:?}");
    }
    assert_eq!(
        names.len(),
        users.len() + 1,
        "the users and the bot, once each: {names:?}"
    );
    assert_eq!(
        b.add_members(&room.id, &[])
            .await
            .expect("empty add")
            .unknown
            .len(),
        0
    );
}

/// Usernames without an account are reported, not fatal, and the others are added.
pub async fn unknown_users_reported<F: Fixture>(f: &F) {
    let b = f.backend();
    let users = f.seed_users("ct.known", 2).await;
    let ghosts = [f.unique("ct.ghost"), f.unique("ct.ghost")];
    let room = new_room(f, false).await;
    let wanted = vec![
        users[0].clone(),
        ghosts[0].clone(),
        users[1].clone(),
        ghosts[1].clone(),
    ];
    let outcome = b.add_members(&room.id, &wanted).await.expect("add_members");
    let unknown: HashSet<String> = outcome.unknown.iter().map(|u| lower(u)).collect();
    let expected: HashSet<String> = ghosts.iter().map(|u| lower(u)).collect();
    assert_eq!(
        unknown, expected,
        "exactly the missing accounts are reported"
    );
    assert!(outcome.calls >= 1, "{outcome:?}");
    let names = member_names(f, &room).await;
    assert!(
        names.contains(&lower(&users[0])) && names.contains(&lower(&users[1])),
        "{names:?}"
    );
    assert!(!names.contains(&lower(&ghosts[0])));
}

/// Removing a member twice, or someone who never was one, is fine; the bot is never removed.
pub async fn idempotent_removes<F: Fixture>(f: &F) {
    let b = f.backend();
    let users = f.seed_users("ct.rm", 3).await;
    let room = new_room(f, false).await;
    b.add_members(&room.id, &users[..2])
        .await
        .expect("add_members");
    b.remove_member(&room.id, &users[0])
        .await
        .expect("remove_member");
    b.remove_member(&room.id, &users[0])
        .await
        .expect("remove_member again");
    b.remove_member(&room.id, &users[2])
        .await
        .expect("remove a never-member");
    b.remove_member(&room.id, b.bot_username())
        .await
        .expect("remove the bot: refused quietly");
    let names = member_names(f, &room).await;
    assert!(!names.contains(&lower(&users[0])), "{names:?}");
    assert!(names.contains(&lower(&users[1])), "{names:?}");
    assert!(
        names.contains(&lower(b.bot_username())),
        "the bot stays: {names:?}"
    );
    // Removed members can come back.
    b.add_members(&room.id, &users[..1]).await.expect("re-add");
    assert!(member_names(f, &room).await.contains(&lower(&users[0])));
}

/// A room with more members than the backend's largest page is listed completely, once each.
pub async fn pagination_past_every_page_size<F: Fixture>(f: &F) {
    let b = f.backend();
    let n = f.largest_page() + 5;
    let users = f.seed_users("ct.page", n).await;
    let room = new_room(f, false).await;
    let outcome = b.add_members(&room.id, &users).await.expect("add_members");
    assert!(outcome.unknown.is_empty(), "{outcome:?}");
    let listed = members(f, &room).await;
    let names: HashSet<String> = listed.iter().map(|m| lower(&m.username)).collect();
    assert_eq!(listed.len(), names.len(), "nobody listed twice");
    for u in &users {
        assert!(
            names.contains(&lower(u)),
            "{u} listed ({} of {n} + bot)",
            names.len()
        );
    }
    assert_eq!(listed.len(), n + 1);
}

/// Moderator grants and revocations round-trip, repeat harmlessly, and batch.
pub async fn moderator_round_trip<F: Fixture>(f: &F) {
    let b = f.backend();
    let users = f.seed_users("ct.mod", 3).await;
    let room = new_room(f, false).await;
    b.add_members(&room.id, &users).await.expect("add_members");
    b.set_moderator(&room.id, &users[0], true)
        .await
        .expect("grant");
    b.set_moderator(&room.id, &users[0], true)
        .await
        .expect("grant again");
    assert!(member(f, &room, &users[0]).await.expect("member").moderator);
    assert!(!member(f, &room, &users[1]).await.expect("member").moderator);
    b.set_moderator(&room.id, &users[0], false)
        .await
        .expect("revoke");
    b.set_moderator(&room.id, &users[0], false)
        .await
        .expect("revoke again");
    assert!(!member(f, &room, &users[0]).await.expect("member").moderator);
    let batch = vec![
        (users[1].clone(), true),
        (users[2].clone(), true),
        (users[0].clone(), false),
    ];
    b.set_moderators(&room.id, &batch).await.expect("batch");
    let after = members(f, &room).await;
    let flag = |u: &str| {
        after
            .iter()
            .find(|m| lower(&m.username) == lower(u))
            .map(|m| m.moderator)
    };
    assert_eq!(
        (flag(&users[0]), flag(&users[1]), flag(&users[2])),
        (Some(false), Some(true), Some(true))
    );
    b.set_moderators(&room.id, &[(users[1].clone(), false)])
        .await
        .expect("batch revoke");
    assert!(!member(f, &room, &users[1]).await.expect("member").moderator);
    assert!(member(f, &room, &users[2]).await.expect("member").moderator);
    let bot = member(f, &room, b.bot_username()).await.expect("bot");
    assert!(bot.owner, "the bot keeps its rank: {bot:?}");
}

/// Read-only round-trips and repeats harmlessly.
pub async fn read_only_round_trip<F: Fixture>(f: &F) {
    let b = f.backend();
    let room = new_room(f, false).await;
    b.set_read_only(&room.id, true).await.expect("set");
    b.set_read_only(&room.id, true).await.expect("set again");
    assert!(reread(f, &room).await.read_only);
    b.set_read_only(&room.id, false).await.expect("clear");
    b.set_read_only(&room.id, false).await.expect("clear again");
    assert!(!reread(f, &room).await.read_only);
}

/// Archive and unarchive round-trip, repeat harmlessly, keep the members and the read-only
/// setting.
pub async fn archive_round_trip<F: Fixture>(f: &F) {
    let b = f.backend();
    let users = f.seed_users("ct.arch", 1).await;
    let room = new_room(f, false).await;
    b.add_members(&room.id, &users).await.expect("add_members");
    b.set_read_only(&room.id, true).await.expect("read-only");
    b.archive_room(&room.id).await.expect("archive");
    b.archive_room(&room.id).await.expect("archive again");
    assert!(reread(f, &room).await.archived);
    b.unarchive_room(&room.id).await.expect("unarchive");
    b.unarchive_room(&room.id).await.expect("unarchive again");
    let back = reread(f, &room).await;
    assert!(!back.archived, "{back:?}");
    assert!(back.read_only, "read-only survives the archive: {back:?}");
    assert!(member_names(f, &room).await.contains(&lower(&users[0])));
    b.set_read_only(&room.id, false)
        .await
        .expect("clear read-only");
    b.archive_room(&room.id)
        .await
        .expect("archive a writable room");
    b.unarchive_room(&room.id).await.expect("unarchive");
    assert!(
        !reread(f, &room).await.read_only,
        "writable again after the round trip"
    );
}

/// A deleted room is gone by id and name; deleting it again is fine.
pub async fn delete_room_is_final<F: Fixture>(f: &F) {
    let b = f.backend();
    let users = f.seed_users("ct.del", 2).await;
    let room = new_room(f, false).await;
    b.add_members(&room.id, &users).await.expect("add_members");
    b.delete_room(&room.id).await.expect("delete_room");
    assert_eq!(b.room_by_id(&room.id).await.expect("room_by_id"), None);
    assert_eq!(
        b.room_by_name(&room.name).await.expect("room_by_name"),
        None
    );
    b.delete_room(&room.id).await.expect("delete_room again");
}

/// Listing or adding to a room that does not exist is `RoomNotFound`.
pub async fn unknown_room_is_room_not_found<F: Fixture>(f: &F) {
    let b = f.backend();
    let users = f.seed_users("ct.nf", 1).await;
    let room = new_room(f, false).await;
    b.delete_room(&room.id).await.expect("delete_room");
    match b.list_members(&room.id).await {
        Err(ChatError::RoomNotFound { .. }) => {}
        other => panic!("list_members of a deleted room: {other:?}"),
    }
    match b.add_members(&room.id, &users).await {
        Err(ChatError::RoomNotFound { .. }) => {}
        other => panic!("add_members to a deleted room: {other:?}"),
    }
}

/// The server's rate-limit answer is `RateLimited` with the retry time the server gave.
pub async fn rate_limit_is_mapped_with_the_servers_retry_time<F: Fixture>(f: &F) {
    let probe = f.rate_limited_call().await;
    let now = Utc::now();
    match probe.error {
        ChatError::RateLimited { retry_at, .. } => {
            assert!(
                retry_at >= probe.earliest && retry_at <= probe.latest,
                "retry_at {retry_at} outside the server's [{}, {}]",
                probe.earliest,
                probe.latest
            );
            assert!(
                retry_at > now - chrono::Duration::seconds(1),
                "{retry_at} is in the past"
            );
        }
        other => panic!("a rate-limit answer must be RateLimited: {other:?}"),
    }
}
