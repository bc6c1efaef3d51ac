//! [`MemoryBackend`]: the reference implementation of the contract, in memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use rcjobs_chat::{
    AddMembersOutcome, ChatBackend, ChatError, ChatResult, ChatUser, NewChatUser, NewRoom, Room,
    RoomMember,
};

/// Username of the bot in a [`MemoryBackend`].
pub const BOT: &str = "rcjobs.bot";

#[derive(Debug, Clone)]
struct Account {
    user: ChatUser,
    email: String,
}

#[derive(Debug, Clone, Default)]
struct Flags {
    moderator: bool,
    owner: bool,
}

#[derive(Debug, Clone)]
struct MemRoom {
    room: Room,
    /// Lower-cased username → roles, ordered so that listings page deterministically.
    members: BTreeMap<String, Flags>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<String, Account>,
    rooms: HashMap<String, MemRoom>,
    next_id: u64,
    calls: u64,
    injected: VecDeque<ChatError>,
}

/// A fast, deterministic chat server and backend in one: usernames are case-insensitive,
/// listings are read in pages of `page_size` (as a server's would be), adds are batched by
/// the same size, and any call can be made to fail with an injected [`ChatError`] (a
/// rate limit, a transient fault) to test what a caller does with it.
#[derive(Debug)]
pub struct MemoryBackend {
    state: Mutex<State>,
    page_size: usize,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new(50)
    }
}

impl MemoryBackend {
    /// An empty server with only the bot's account; listings page by `page_size`.
    pub fn new(page_size: usize) -> Self {
        let backend = MemoryBackend {
            state: Mutex::new(State::default()),
            page_size: page_size.max(1),
        };
        backend.add_user(BOT, true);
        backend
    }

    /// Creates an account out of band (as an administrator would).
    pub fn add_user(&self, username: &str, active: bool) {
        let mut s = self.lock();
        s.next_id += 1;
        let id = format!("mem-user-{}", s.next_id);
        s.users.insert(
            username.to_lowercase(),
            Account {
                user: ChatUser {
                    id,
                    username: username.to_owned(),
                    active,
                },
                email: String::new(),
            },
        );
    }

    /// Makes the next call (whichever it is) fail with `error`; several queue up.
    pub fn inject(&self, error: ChatError) {
        self.lock().injected.push_back(error);
    }

    /// Backend calls made so far (a listing counts one per page, an add one per batch).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// The largest page the backend reads or writes.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `n` calls and hands out an injected failure, if any.
    fn call(&self, n: u64) -> ChatResult<std::sync::MutexGuard<'_, State>> {
        let mut s = self.lock();
        s.calls += n.max(1);
        match s.injected.pop_front() {
            Some(e) => Err(e),
            None => Ok(s),
        }
    }
}

fn not_found(endpoint: &str, room_id: &str) -> ChatError {
    ChatError::RoomNotFound {
        endpoint: endpoint.into(),
        message: format!("no room {room_id}"),
    }
}

fn room_mut<'a>(s: &'a mut State, endpoint: &str, room_id: &str) -> ChatResult<&'a mut MemRoom> {
    s.rooms
        .get_mut(room_id)
        .ok_or_else(|| not_found(endpoint, room_id))
}

#[async_trait]
impl ChatBackend for MemoryBackend {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    fn bot_username(&self) -> &str {
        BOT
    }

    async fn find_user(&self, username: &str) -> ChatResult<Option<ChatUser>> {
        let s = self.call(1)?;
        Ok(s.users
            .get(&username.to_lowercase())
            .map(|a| a.user.clone()))
    }

    async fn create_user(&self, user: &NewChatUser) -> ChatResult<ChatUser> {
        let mut s = self.call(1)?;
        let email = user.email.to_lowercase();
        let taken = s.users.contains_key(&user.username.to_lowercase())
            || (!email.is_empty() && s.users.values().any(|a| a.email == email));
        if taken {
            return Err(ChatError::Conflict {
                endpoint: "create_user".into(),
                code: "taken".into(),
                message: format!("{} or its e-mail is taken", user.username),
            });
        }
        s.next_id += 1;
        let created = ChatUser {
            id: format!("mem-user-{}", s.next_id),
            username: user.username.clone(),
            active: true,
        };
        s.users.insert(
            user.username.to_lowercase(),
            Account {
                user: created.clone(),
                email,
            },
        );
        Ok(created)
    }

    async fn room_by_id(&self, room_id: &str) -> ChatResult<Option<Room>> {
        let s = self.call(1)?;
        Ok(s.rooms.get(room_id).map(|r| r.room.clone()))
    }

    async fn room_by_name(&self, name: &str) -> ChatResult<Option<Room>> {
        let s = self.call(1)?;
        Ok(s.rooms
            .values()
            .find(|r| r.room.name == name)
            .map(|r| r.room.clone()))
    }

    async fn create_room(&self, room: &NewRoom) -> ChatResult<Room> {
        let mut s = self.call(1)?;
        if s.rooms.values().any(|r| r.room.name == room.name) {
            return Err(ChatError::Conflict {
                endpoint: "create_room".into(),
                code: "duplicate-name".into(),
                message: format!("a room named {} exists", room.name),
            });
        }
        s.next_id += 1;
        let created = Room {
            id: format!("mem-room-{}", s.next_id),
            name: room.name.clone(),
            archived: false,
            read_only: room.read_only,
        };
        let mut members = BTreeMap::new();
        members.insert(
            BOT.to_owned(),
            Flags {
                moderator: false,
                owner: true,
            },
        );
        s.rooms.insert(
            created.id.clone(),
            MemRoom {
                room: created.clone(),
                members,
            },
        );
        Ok(created)
    }

    /// Reads page after page, as a paging server's client would, so a caller sees what a
    /// listing of more members than a page gives.
    async fn list_members(&self, room_id: &str) -> ChatResult<Vec<RoomMember>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let s = self.call(1)?;
            let room = s
                .rooms
                .get(room_id)
                .ok_or_else(|| not_found("list_members", room_id))?;
            let page: Vec<(String, Flags)> = room
                .members
                .iter()
                .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
                .take(self.page_size)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (name, flags) in &page {
                let Some(account) = s.users.get(name) else {
                    continue;
                };
                // Deactivated accounts stay in the room but are not listed (as Rocket.Chat).
                if !account.user.active {
                    continue;
                }
                out.push(RoomMember {
                    user_id: account.user.id.clone(),
                    username: account.user.username.clone(),
                    moderator: flags.moderator,
                    owner: flags.owner,
                });
            }
            if page.len() < self.page_size {
                return Ok(out);
            }
            after = page.last().map(|(k, _)| k.clone());
        }
    }

    async fn add_members(
        &self,
        room_id: &str,
        usernames: &[String],
    ) -> ChatResult<AddMembersOutcome> {
        if usernames.is_empty() {
            return Ok(AddMembersOutcome::default());
        }
        let batches = usernames.len().div_ceil(self.page_size) as u32;
        let mut s = self.call(u64::from(batches))?;
        let known: HashMap<String, bool> = usernames
            .iter()
            .filter_map(|u| {
                let k = u.to_lowercase();
                s.users.get(&k).map(|a| (k, a.user.active))
            })
            .collect();
        let room = room_mut(&mut s, "add_members", room_id)?;
        let mut unknown = Vec::new();
        for u in usernames {
            match known.get(&u.to_lowercase()) {
                None => unknown.push(u.clone()),
                Some(false) => {}
                Some(true) => {
                    room.members.entry(u.to_lowercase()).or_default();
                }
            }
        }
        Ok(AddMembersOutcome {
            calls: batches,
            unknown,
        })
    }

    async fn remove_member(&self, room_id: &str, username: &str) -> ChatResult<()> {
        let mut s = self.call(1)?;
        let room = room_mut(&mut s, "remove_member", room_id)?;
        if !username.eq_ignore_ascii_case(BOT) {
            room.members.remove(&username.to_lowercase());
        }
        Ok(())
    }

    async fn set_moderator(
        &self,
        room_id: &str,
        username: &str,
        moderator: bool,
    ) -> ChatResult<()> {
        let mut s = self.call(1)?;
        let room = room_mut(&mut s, "set_moderator", room_id)?;
        match room.members.get_mut(&username.to_lowercase()) {
            Some(flags) => {
                flags.moderator = moderator;
                Ok(())
            }
            None => Err(ChatError::Permanent {
                endpoint: "set_moderator".into(),
                code: "not-in-room".into(),
                message: format!("{username} is not a member"),
            }),
        }
    }

    async fn archive_room(&self, room_id: &str) -> ChatResult<()> {
        let mut s = self.call(1)?;
        room_mut(&mut s, "archive_room", room_id)?.room.archived = true;
        Ok(())
    }

    async fn unarchive_room(&self, room_id: &str) -> ChatResult<()> {
        let mut s = self.call(1)?;
        room_mut(&mut s, "unarchive_room", room_id)?.room.archived = false;
        Ok(())
    }

    async fn set_read_only(&self, room_id: &str, read_only: bool) -> ChatResult<()> {
        let mut s = self.call(1)?;
        room_mut(&mut s, "set_read_only", room_id)?.room.read_only = read_only;
        Ok(())
    }

    async fn delete_room(&self, room_id: &str) -> ChatResult<()> {
        let mut s = self.call(1)?;
        s.rooms.remove(room_id);
        Ok(())
    }
}
