//! The model's desired membership equals an independent computation of Moodle truth over a
//! generated site (module, course and category roles; suspended, expired, future and disabled
//! enrolments; suspended and deleted users; modules being deleted).
#![allow(clippy::unwrap_used)]

use rcjobs_moodle::fixture::{self, FixtureSpec, UserSet};
use rcjobs_moodle::{model, schema, MoodleDb, Prefix};
use rcjobs_testkit::TestDb;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// user id -> moderator, computed in Rust from raw rows.
async fn oracle(pool: &sqlx::PgPool, p: &str, cmid: i64, now: i64) -> BTreeMap<i64, bool> {
    let q = |s: &str| sqlx::AssertSqlSafe(s.replace("{p}", p));
    let (course, path, mods, usrs, dip): (i64, String, Option<String>, Option<String>, i16) = sqlx::query_as(q(
        "SELECT cm.course, ctx.path, r.moderatorroles, r.userroles, cm.deletioninprogress
           FROM {p}course_modules cm JOIN {p}rocketchat r ON r.id = cm.instance
           JOIN {p}context ctx ON ctx.contextlevel = 70 AND ctx.instanceid = cm.id WHERE cm.id = $1",
    ))
    .bind(cmid)
    .fetch_one(pool)
    .await
    .unwrap();
    if dip != 0 {
        return BTreeMap::new();
    }
    let parse = |s: Option<String>| -> BTreeSet<i64> {
        s.unwrap_or_default()
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect()
    };
    let (mods, usrs) = (parse(mods), parse(usrs));
    let ctxs: BTreeSet<i64> = path.split('/').filter_map(|x| x.parse().ok()).collect();
    let users: HashMap<i64, (i16, i16)> =
        sqlx::query_as::<_, (i64, i16, i16)>(q("SELECT id, deleted, suspended FROM {p}user"))
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, d, s)| (id, (d, s)))
            .collect();
    let enrolled: BTreeSet<i64> = sqlx::query_as::<_, (i64, i64, i64, i64, i64)>(q(
        "SELECT ue.userid, ue.status, e.status, ue.timestart, ue.timeend
           FROM {p}user_enrolments ue, {p}enrol e WHERE e.id = ue.enrolid AND e.courseid = $1",
    ))
    .bind(course)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .filter(|&(_, us, es, ts, te)| us == 0 && es == 0 && ts <= now && (te == 0 || te > now))
    .map(|r| r.0)
    .collect();
    let mut out = BTreeMap::new();
    for (u, role, ctx) in sqlx::query_as::<_, (i64, i64, i64)>(q(
        "SELECT userid, roleid, contextid FROM {p}role_assignments",
    ))
    .fetch_all(pool)
    .await
    .unwrap()
    {
        if !ctxs.contains(&ctx) || !enrolled.contains(&u) || users.get(&u) != Some(&(0, 0)) {
            continue;
        }
        if mods.contains(&role) {
            out.insert(u, true);
        } else if usrs.contains(&role) {
            out.entry(u).or_insert(false);
        }
    }
    out
}

#[tokio::test]
async fn desired_membership_matches_independent_computation() {
    let db = TestDb::new().await;
    let p = Prefix::new("mdl_").unwrap();
    schema::create(&db.pool, &p).await.unwrap();
    let mut spec = FixtureSpec::new(600, 12, 7);
    spec.enrolments_per_user = 4;
    spec.empty_courses = 1;
    let sum = fixture::generate(&db.pool, &p, &spec).await.unwrap();
    let m = MoodleDb::new(db.pool.clone(), "mdl_").unwrap();
    let now = spec.now;

    // A module on its way to the bin is not a room any more.
    let first_room = m.rooms_page(None, 1).await.unwrap().remove(0);
    sqlx::query("UPDATE mdl_course_modules SET deletioninprogress = 1 WHERE id = $1")
        .bind(first_room.cmid)
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(m.room_by_cmid(first_room.cmid).await.unwrap().is_none());
    assert!(
        m.room_by_cmid_any(first_room.cmid)
            .await
            .unwrap()
            .unwrap()
            .deletion_in_progress
    );

    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = m.rooms_page(after, 5).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.cmid);
        all.extend(page);
    }
    assert_eq!(all.len() as i64, m.count_rooms().await.unwrap());
    assert_eq!(all.len() as u64, sum.rooms - 1);
    assert!(all.iter().all(|r| r.cmid != first_room.cmid));

    let mut per_user: BTreeMap<i64, BTreeMap<i64, bool>> = BTreeMap::new();
    let mut total = 0;
    for room in &all {
        let want = oracle(&db.pool, "mdl_", room.cmid, now).await;
        let got: BTreeMap<i64, bool> = m
            .desired_members(room, now)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.user_id, d.moderator))
            .collect();
        assert_eq!(got, want, "room {}", room.cmid);
        total += got.len();
        for (u, md) in &got {
            per_user.entry(*u).or_default().insert(room.cmid, *md);
        }
        // The single-user form agrees.
        for (u, md) in got.iter().take(3) {
            let one = m.desired_member(room, *u, now).await.unwrap().unwrap();
            assert_eq!(one.moderator, *md);
        }
    }
    assert!(
        total > 500,
        "the fixture produces real memberships ({total})"
    );
    assert!(
        per_user.values().flat_map(|m| m.values()).any(|m| *m),
        "some moderators"
    );

    // rooms_for_user is the transpose.
    for u in sum.first_user_id..sum.first_user_id + 80 {
        let got: BTreeMap<i64, bool> = m
            .rooms_for_user(u, now)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.room.cmid, r.moderator))
            .collect();
        assert_eq!(
            got,
            per_user.get(&u).cloned().unwrap_or_default(),
            "user {u}"
        );
        let touching: BTreeSet<i64> = m
            .rooms_touching_user(u)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.cmid)
            .collect();
        assert!(got.keys().all(|c| touching.contains(c)));
    }

    // Mass enrolment of everybody into the empty course's rooms.
    let course = sum.empty_course_ids[0];
    let rooms = m.rooms_of_course(course).await.unwrap();
    assert!(!rooms.is_empty());
    assert!(m.desired_members(&rooms[0], now).await.unwrap().is_empty());
    let n = fixture::mass_enrol(
        &db.pool,
        &p,
        course,
        &UserSet::Range {
            first: sum.first_user_id,
            last: sum.last_user_id,
        },
        "student",
    )
    .await
    .unwrap();
    let deleted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mdl_user WHERE deleted = 1 AND id >= $1")
            .bind(sum.first_user_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(n as i64, 600 - deleted);
    let later = rcjobs_moodle::unix_now() + 1;
    let want = oracle(&db.pool, "mdl_", rooms[0].cmid, later).await;
    let got = m.desired_members(&rooms[0], later).await.unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got.len() > 500);
    // Idempotent.
    let again = fixture::mass_enrol(
        &db.pool,
        &p,
        course,
        &UserSet::Ids(vec![sum.first_user_id]),
        "student",
    )
    .await
    .unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn fixture_is_deterministic_for_a_seed() {
    let a = TestDb::new().await;
    let b = TestDb::new().await;
    let p = Prefix::new("mdl_").unwrap();
    let mut spec = FixtureSpec::new(300, 6, 42);
    spec.now = 1_700_000_000;
    let mut digests = Vec::new();
    for db in [&a, &b] {
        schema::create(&db.pool, &p).await.unwrap();
        fixture::generate(&db.pool, &p, &spec).await.unwrap();
        let d: String = sqlx::query_scalar(
            "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
               SELECT format('ra%s/%s/%s', userid, contextid, roleid) x FROM mdl_role_assignments
               UNION ALL SELECT format('ue%s/%s/%s/%s/%s', userid, enrolid, status, timestart, timeend) FROM mdl_user_enrolments
               UNION ALL SELECT format('u%s/%s/%s/%s', id, username, deleted, suspended) FROM mdl_user
               UNION ALL SELECT format('r%s/%s/%s', id, rocketchatid, moderatorroles) FROM mdl_rocketchat) t",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        digests.push(d);
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn role_lists_parse_as_the_plugin_stores_them() {
    assert_eq!(model::parse_role_list(Some("3,4")), vec![3, 4]);
    assert_eq!(model::parse_role_list(Some(" 5 , 3,,x")), vec![3, 5]);
    assert_eq!(model::parse_role_list(None), Vec::<i64>::new());
    assert_eq!(model::path_ids("/1/3/45"), vec![1, 3, 45]);
}
