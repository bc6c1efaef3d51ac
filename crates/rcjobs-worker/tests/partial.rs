//! Partial progress of a room sync (issue 13): every change that can be applied is, a
//! transient error on one member does not block the others (it is retried inside the
//! handler, then left for the job's retry), and removals are not starved by additions.

#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use common::{small_site, sql, Env};
use rcjobs_chat::{
    AddMembersOutcome, ChatBackend, ChatError, ChatResult, ChatUser, NewChatUser, NewRoom, Room,
    RoomMember,
};
use rcjobs_moodle::fixture::{mass_enrol, UserSet};
use rcjobs_producer::{room_lock_key, Job};
use rcjobs_rocketchat::{Auth, RocketChatBackend, RocketChatClient, RocketChatConfig, Secret};
use rcjobs_sim::SimConfig;
use rcjobs_worker::{Engine, HandlerError, JobInfo, WorkerConfig};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Accounts created on demand; the periodic reconcile left at its default (on).
fn config() -> WorkerConfig {
    WorkerConfig {
        create_accounts: true,
        ..WorkerConfig::default()
    }
}

/// The chat activity of the fixture's empty course, made visible, with `n` users enrolled
/// as students. Returns (cmid, course id).
async fn empty_room_with_students(env: &Env, n: i64) -> (i64, i64) {
    let course = env.fixture.empty_course_ids[0];
    let cmid: i64 = sqlx::query_scalar(sql(
        "SELECT min(cm.id) FROM {p}course_modules cm JOIN {p}modules m ON m.id = cm.module AND m.name = 'rocketchat' WHERE cm.course = $1",
    ))
    .bind(course)
    .fetch_one(env.pool())
    .await
    .unwrap();
    sqlx::query(sql(
        "UPDATE {p}course_modules SET visible = 1, visibleoncoursepage = 1 WHERE id = $1",
    ))
    .bind(cmid)
    .execute(env.pool())
    .await
    .unwrap();
    let first = env.fixture.first_user_id;
    mass_enrol(
        env.pool(),
        &env.prefix,
        course,
        &UserSet::Range {
            first,
            last: first + n - 1,
        },
        "student",
    )
    .await
    .unwrap();
    (cmid, course)
}

/// Moodle user ids of the course's enrolled users, in id order.
async fn enrolled(env: &Env, course: i64) -> Vec<i64> {
    sqlx::query_scalar(sql(
        "SELECT ue.userid FROM {p}user_enrolments ue JOIN {p}enrol e ON e.id = ue.enrolid
          WHERE e.courseid = $1 ORDER BY ue.userid",
    ))
    .bind(course)
    .fetch_all(env.pool())
    .await
    .unwrap()
}

/// Turns the students `users` of `course` into holders of the room's first moderator role.
async fn make_moderators(env: &Env, cmid: i64, course: i64, users: &[i64]) {
    let mods: String = sqlx::query_scalar(sql(
        "SELECT moderatorroles FROM {p}rocketchat r JOIN {p}course_modules cm ON cm.instance = r.id WHERE cm.id = $1",
    ))
    .bind(cmid)
    .fetch_one(env.pool())
    .await
    .unwrap();
    let moderator: i64 = mods.split(',').next().unwrap().trim().parse().unwrap();
    sqlx::query(sql(
        "UPDATE {p}role_assignments SET roleid = $1
          WHERE userid = ANY($2)
            AND contextid = (SELECT id FROM {p}context WHERE contextlevel = 50 AND instanceid = $3)
            AND roleid = (SELECT id FROM {p}role WHERE shortname = 'student')",
    ))
    .bind(moderator)
    .bind(users)
    .bind(course)
    .execute(env.pool())
    .await
    .unwrap();
}

/// Ends the enrolments of `users` in `course` (their room membership must go).
async fn unenrol(env: &Env, course: i64, users: &[i64]) {
    sqlx::query(sql("DELETE FROM {p}user_enrolments WHERE userid = ANY($1)
            AND enrolid IN (SELECT id FROM {p}enrol WHERE courseid = $2)"))
    .bind(users)
    .bind(course)
    .execute(env.pool())
    .await
    .unwrap();
}

/// What the room of `cmid` holds in chat (bot excluded): username → moderator.
async fn room_members(env: &Env, cmid: i64) -> BTreeMap<String, bool> {
    let room = env.room_id(cmid).await.expect("room mapped");
    env.chat_members(&room).expect("room exists").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_grants_and_removals_converge_in_few_attempts_with_a_flaky_server() {
    let env = Env::new(small_site(21), SimConfig::default(), config()).await;
    let (cmid, course) = empty_room_with_students(&env, 80).await;
    let worker = env.start_worker(2).await;
    let job = Job::parse("synchronize_group", &json!({ "cmid": cmid })).unwrap();
    rcjobs_producer::enqueue(env.pool(), &job).await.unwrap();
    env.drain().await;
    let before = room_members(&env, cmid).await;
    assert_eq!(before, env.truth(cmid).await, "initial fill");

    // Most members become moderators, several leave.
    let users = enrolled(&env, course).await;
    make_moderators(&env, cmid, course, &users[..60]).await;
    unenrol(&env, course, &users[users.len() - 8..]).await;
    let truth = env.truth(cmid).await;
    let grants = truth.values().filter(|m| **m).count();
    let kicks = before.keys().filter(|u| !truth.contains_key(*u)).count();
    assert!(
        grants >= 40 && kicks >= 5,
        "fixture: {grants} grants, {kicks} kicks"
    );

    env.sim.set_fail_rate(0.25);
    let id = rcjobs_producer::enqueue(env.pool(), &job).await.unwrap().id;
    // Waits for the job itself: `drain` does not wait for a job whose durable retry is
    // scheduled more than a second ahead.
    let pool = env.pool().clone();
    rcjobs_testkit::wait_for("the sync finished", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move {
            let state: Option<String> = sqlx::query_scalar(
                "SELECT state FROM rcjobs.job_history WHERE id = $1 AND state IN ('completed', 'dead')",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .ok()?;
            state.map(|_| ())
        }
    })
    .await;
    env.sim.set_fail_rate(0.0);

    assert!(
        env.dead_jobs().await.is_empty(),
        "{:?}",
        env.dead_jobs().await
    );
    let members = room_members(&env, cmid).await;
    if members != truth {
        env.dump().await;
    }
    assert_eq!(members, truth, "room converged");
    let (attempt, state, last_error): (i32, String, Option<String>) =
        sqlx::query_as("SELECT attempt, state, last_error FROM rcjobs.job_history WHERE id = $1")
            .bind(id)
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(state, "completed");
    eprintln!(
        "{grants} grants and {kicks} kicks at 25 % failures: {attempt} attempt(s) ({last_error:?})"
    );
    // Without in-handler retries each attempt has 1 - 0.75^70 ≈ 100 % chance to hit an error;
    // with them a call is lost with 0.25^4 ≈ 0.4 %, and what is lost is all that is retried.
    assert!(
        attempt <= 3,
        "{grants} grants and {kicks} kicks took {attempt} attempts"
    );
    let result: String =
        sqlx::query_scalar("SELECT last_result FROM rcjobs_sync.room WHERE cmid = $1")
            .bind(cmid)
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(
        result, "converged",
        "pending outcomes cleared by the last pass"
    );
    worker.stop().await;
}

/// How [`FlakyGrants`] answers moderator grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GrantFault {
    /// 500 every time.
    Transient,
    /// 429 every time.
    RateLimited,
}

/// The simulator's backend, with every moderator grant failing.
struct FlakyGrants {
    inner: RocketChatBackend,
    fault: Mutex<GrantFault>,
    grant_calls: AtomicUsize,
}

#[async_trait]
impl ChatBackend for FlakyGrants {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn bot_username(&self) -> &str {
        self.inner.bot_username()
    }
    async fn find_user(&self, username: &str) -> ChatResult<Option<ChatUser>> {
        self.inner.find_user(username).await
    }
    async fn create_user(&self, user: &NewChatUser) -> ChatResult<ChatUser> {
        self.inner.create_user(user).await
    }
    async fn room_by_id(&self, room_id: &str) -> ChatResult<Option<Room>> {
        self.inner.room_by_id(room_id).await
    }
    async fn room_by_name(&self, name: &str) -> ChatResult<Option<Room>> {
        self.inner.room_by_name(name).await
    }
    async fn create_room(&self, room: &NewRoom) -> ChatResult<Room> {
        self.inner.create_room(room).await
    }
    async fn list_members(&self, room_id: &str) -> ChatResult<Vec<RoomMember>> {
        self.inner.list_members(room_id).await
    }
    async fn add_members(
        &self,
        room_id: &str,
        usernames: &[String],
    ) -> ChatResult<AddMembersOutcome> {
        self.inner.add_members(room_id, usernames).await
    }
    async fn remove_member(&self, room_id: &str, username: &str) -> ChatResult<()> {
        self.inner.remove_member(room_id, username).await
    }
    async fn set_moderator(
        &self,
        room_id: &str,
        username: &str,
        moderator: bool,
    ) -> ChatResult<()> {
        if !moderator {
            return self.inner.set_moderator(room_id, username, moderator).await;
        }
        self.grant_calls.fetch_add(1, Ordering::SeqCst);
        let fault = *self.fault.lock().unwrap();
        Err(match fault {
            GrantFault::Transient => ChatError::Transient {
                endpoint: "groups.addModerator".into(),
                message: "HTTP 500".into(),
            },
            GrantFault::RateLimited => ChatError::RateLimited {
                endpoint: "groups.addModerator".into(),
                retry_at: chrono::Utc::now() + chrono::Duration::seconds(30),
            },
        })
    }
    async fn archive_room(&self, room_id: &str) -> ChatResult<()> {
        self.inner.archive_room(room_id).await
    }
    async fn unarchive_room(&self, room_id: &str) -> ChatResult<()> {
        self.inner.unarchive_room(room_id).await
    }
    async fn set_read_only(&self, room_id: &str, read_only: bool) -> ChatResult<()> {
        self.inner.set_read_only(room_id, read_only).await
    }
    async fn delete_room(&self, room_id: &str) -> ChatResult<()> {
        self.inner.delete_room(room_id).await
    }
}

async fn sim_backend(env: &Env) -> RocketChatBackend {
    let rc = RocketChatConfig::new(
        url::Url::parse(&env.sim.base_url()).unwrap(),
        Auth::Token {
            user_id: env.sim.bot_user_id().to_owned(),
            token: Secret::new(env.sim.bot_token()),
        },
    );
    RocketChatBackend::connect(RocketChatClient::new(rc).unwrap())
        .await
        .unwrap()
}

fn sync_job(cmid: i64, id: i64) -> JobInfo {
    JobInfo {
        id,
        kind: "synchronize_group".into(),
        attempt: 1,
        exclusion_key: Some(room_lock_key(cmid)),
        enqueued_at: chrono::Utc::now(),
    }
}

async fn member_table(env: &Env, cmid: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT username FROM rcjobs_sync.member WHERE cmid = $1 ORDER BY 1")
        .bind(cmid)
        .fetch_all(env.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_happen_while_grants_keep_failing() {
    let env = Env::new(small_site(23), SimConfig::default(), config()).await;
    let (cmid, course) = empty_room_with_students(&env, 16).await;
    let payload = json!({ "cmid": cmid });
    env.engine
        .handle(&sync_job(cmid, 1), &payload)
        .await
        .unwrap();
    let before = room_members(&env, cmid).await;
    assert_eq!(before, env.truth(cmid).await, "initial fill");

    let flaky = Arc::new(FlakyGrants {
        inner: sim_backend(&env).await,
        fault: Mutex::new(GrantFault::Transient),
        grant_calls: AtomicUsize::new(0),
    });
    let engine = Engine::new(
        env.pool().clone(),
        env.moodle.clone(),
        flaky.clone(),
        config(),
        None,
    )
    .unwrap();

    // Three grants that never succeed, four removals.
    let users = enrolled(&env, course).await;
    make_moderators(&env, cmid, course, &users[..3]).await;
    unenrol(&env, course, &users[users.len() - 4..]).await;
    let truth = env.truth(cmid).await;
    let grants = truth.values().filter(|m| **m).count();
    let gone: Vec<String> = before
        .keys()
        .filter(|u| !truth.contains_key(*u))
        .cloned()
        .collect();
    assert!(grants == 3 && gone.len() == 4, "{grants} grants, {gone:?}");

    let r = engine.handle(&sync_job(cmid, 2), &payload).await;
    let Err(HandlerError::Retryable(msg)) = &r else {
        panic!("expected a durable retry for the grants left, got {r:?}");
    };
    assert!(msg.contains("3 changes left"), "{msg}");
    assert!(msg.contains("3 moderator grants"), "{msg}");
    assert_eq!(
        flaky.grant_calls.load(Ordering::SeqCst),
        3 * 4,
        "each grant: one call and three in-handler retries"
    );
    let members = room_members(&env, cmid).await;
    for u in &gone {
        assert!(!members.contains_key(u), "{u} not removed: {members:?}");
    }
    // The progress is recorded: the member table lost the removed users, and the grants
    // left are outcomes of the room.
    let table = member_table(&env, cmid).await;
    for u in &gone {
        assert!(!table.contains(u), "{u} still recorded as a member");
    }
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rcjobs_sync.outcome WHERE cmid = $1 AND code = 'change_pending'",
    )
    .bind(cmid)
    .fetch_one(env.pool())
    .await
    .unwrap();
    assert_eq!(pending, 3);
    let result: String =
        sqlx::query_scalar("SELECT last_result FROM rcjobs_sync.room WHERE cmid = $1")
            .bind(cmid)
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(result, "partial");

    // A rate limit still stops the job (snooze), but only after the removals.
    *flaky.fault.lock().unwrap() = GrantFault::RateLimited;
    let more = enrolled(&env, course).await;
    let leaving = &more[more.len() - 2..];
    unenrol(&env, course, leaving).await;
    let before_calls = flaky.grant_calls.load(Ordering::SeqCst);
    let r = engine.handle(&sync_job(cmid, 3), &payload).await;
    assert!(matches!(r, Err(HandlerError::Snooze { .. })), "{r:?}");
    assert_eq!(
        flaky.grant_calls.load(Ordering::SeqCst) - before_calls,
        1,
        "a rate limit is not retried in the handler"
    );
    let truth = env.truth(cmid).await;
    let members = room_members(&env, cmid).await;
    let extra: Vec<&String> = members.keys().filter(|u| !truth.contains_key(*u)).collect();
    assert!(extra.is_empty(), "not removed before the snooze: {extra:?}");

    // With a healthy server the next attempt does what is left.
    env.engine
        .handle(&sync_job(cmid, 4), &payload)
        .await
        .unwrap();
    assert_eq!(room_members(&env, cmid).await, truth);
    let result: String =
        sqlx::query_scalar("SELECT last_result FROM rcjobs_sync.room WHERE cmid = $1")
            .bind(cmid)
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(result, "converged");
}
