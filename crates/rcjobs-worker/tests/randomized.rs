//! Property-based scenario test: random sequences of Moodle changes, the jobs that follow
//! (shuffled and partly duplicated), real workers and simulator; afterwards every room
//! equals Moodle truth computed independently in SQL.

#![allow(clippy::unwrap_used)]

mod common;

use common::{creating_accounts, faulty_chat, sql, Env};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rcjobs_moodle::fixture::{mass_enrol, FixtureSpec, UserSet};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
enum Op {
    Enrol {
        user: usize,
        course: usize,
        role: usize,
    },
    Unenrol {
        user: usize,
        course: usize,
    },
    SuspendEnrolment {
        user: usize,
        course: usize,
    },
    SuspendUser {
        user: usize,
        on: bool,
    },
    CourseRole {
        user: usize,
        course: usize,
        role: usize,
    },
    ModuleRole {
        user: usize,
        room: usize,
        role: usize,
    },
    CloseWindow {
        user: usize,
        course: usize,
    },
}

const ROLES: [&str; 4] = ["student", "editingteacher", "teacher", "guest"];

fn op() -> impl Strategy<Value = Op> {
    let u = 0usize..30;
    prop_oneof![
        (u.clone(), 0usize..3, 0usize..4).prop_map(|(user, course, role)| Op::Enrol {
            user,
            course,
            role
        }),
        (u.clone(), 0usize..3).prop_map(|(user, course)| Op::Unenrol { user, course }),
        (u.clone(), 0usize..3).prop_map(|(user, course)| Op::SuspendEnrolment { user, course }),
        (u.clone(), any::<bool>()).prop_map(|(user, on)| Op::SuspendUser { user, on }),
        (u.clone(), 0usize..3, 0usize..4).prop_map(|(user, course, role)| Op::CourseRole {
            user,
            course,
            role
        }),
        (u.clone(), 0usize..8, 0usize..4).prop_map(|(user, room, role)| Op::ModuleRole {
            user,
            room,
            role
        }),
        (u, 0usize..3).prop_map(|(user, course)| Op::CloseWindow { user, course }),
    ]
}

struct Site {
    users: Vec<i64>,
    courses: Vec<i64>,
    rooms: Vec<i64>,
}

async fn apply(env: &Env, site: &Site, op: &Op, jobs: &mut Vec<(String, Value)>) {
    let p = env.pool();
    let course_ctx = |c: i64| async move {
        sqlx::query_scalar::<_, i64>(sql(
            "SELECT id FROM {p}context WHERE contextlevel = 50 AND instanceid = $1",
        ))
        .bind(c)
        .fetch_one(p)
        .await
        .unwrap()
    };
    let role_id = |r: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql("SELECT id FROM {p}role WHERE shortname = $1"))
            .bind(r)
            .fetch_one(p)
            .await
            .unwrap()
    };
    match *op {
        Op::Enrol { user, course, role } => {
            let (u, c) = (site.users[user], site.courses[course]);
            mass_enrol(p, &env.prefix, c, &UserSet::Ids(vec![u]), ROLES[role])
                .await
                .unwrap();
            let ctx = course_ctx(c).await;
            jobs.push(("enrolment".into(), json!({"courseid": c, "userid": u})));
            jobs.push(("enrol_role_assign".into(), json!({"userid": u, "roleid": role_id(ROLES[role]).await, "context": {"contextlevel": 50, "id": ctx, "instanceid": c}})));
        }
        Op::Unenrol { user, course } => {
            let (u, c) = (site.users[user], site.courses[course]);
            let ctx = course_ctx(c).await;
            sqlx::query(sql("DELETE FROM {p}user_enrolments WHERE userid = $1 AND enrolid IN (SELECT id FROM {p}enrol WHERE courseid = $2)")).bind(u).bind(c).execute(p).await.unwrap();
            sqlx::query(sql(
                "DELETE FROM {p}role_assignments WHERE userid = $1 AND contextid = $2",
            ))
            .bind(u)
            .bind(ctx)
            .execute(p)
            .await
            .unwrap();
            jobs.push(("enrol_role_unassign".into(), json!({"userid": u, "roleid": role_id("student").await, "context": {"contextlevel": 50, "id": ctx, "instanceid": c}})));
            jobs.push(("enrolment".into(), json!({"courseid": c, "userid": u})));
        }
        Op::SuspendEnrolment { user, course } => {
            let (u, c) = (site.users[user], site.courses[course]);
            sqlx::query(sql("UPDATE {p}user_enrolments SET status = 1 WHERE userid = $1 AND enrolid IN (SELECT id FROM {p}enrol WHERE courseid = $2)")).bind(u).bind(c).execute(p).await.unwrap();
            jobs.push(("enrolment".into(), json!({"courseid": c, "userid": u})));
        }
        Op::SuspendUser { user, on } => {
            let u = site.users[user];
            sqlx::query(sql("UPDATE {p}user SET suspended = $2 WHERE id = $1"))
                .bind(u)
                .bind(i16::from(on))
                .execute(p)
                .await
                .unwrap();
            let kind = if on {
                "unenrol_user_everywhere"
            } else {
                "synchronize_user_everywhere"
            };
            jobs.push((kind.into(), json!({"userid": u})));
        }
        Op::CourseRole { user, course, role } => {
            let (u, c) = (site.users[user], site.courses[course]);
            let ctx = course_ctx(c).await;
            let r = role_id(ROLES[role]).await;
            sqlx::query(sql(
                "UPDATE {p}role_assignments SET roleid = $3 WHERE userid = $1 AND contextid = $2",
            ))
            .bind(u)
            .bind(ctx)
            .bind(r)
            .execute(p)
            .await
            .unwrap();
            jobs.push(("enrol_role_assign".into(), json!({"userid": u, "roleid": r, "context": {"contextlevel": 50, "id": ctx, "instanceid": c}})));
        }
        Op::ModuleRole { user, room, role } => {
            let (u, cm) = (site.users[user], site.rooms[room % site.rooms.len()]);
            let ctx: i64 = sqlx::query_scalar(sql(
                "SELECT id FROM {p}context WHERE contextlevel = 70 AND instanceid = $1",
            ))
            .bind(cm)
            .fetch_one(p)
            .await
            .unwrap();
            let r = role_id(ROLES[role]).await;
            sqlx::query(sql("INSERT INTO {p}role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder) VALUES ($1, $2, $3, 0, 2, '', 0, 0)"))
                .bind(r).bind(ctx).bind(u).execute(p).await.unwrap();
            jobs.push(("enrol_role_assign".into(), json!({"userid": u, "roleid": r, "context": {"contextlevel": 70, "id": ctx, "instanceid": cm}})));
        }
        Op::CloseWindow { user, course } => {
            let (u, c) = (site.users[user], site.courses[course]);
            sqlx::query(sql("UPDATE {p}user_enrolments SET timeend = $3 WHERE userid = $1 AND enrolid IN (SELECT id FROM {p}enrol WHERE courseid = $2)"))
                .bind(u).bind(c).bind(chrono::Utc::now().timestamp() - 1).execute(p).await.unwrap();
            // No Moodle event: only the periodic reconcile sees it.
            jobs.push(("reconcile_all".into(), json!({"period_secs": 0})));
        }
    }
}

#[test]
fn random_change_sequences_converge_to_moodle_truth() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut spec = FixtureSpec::new(40, 3, 21);
    spec.enrolments_per_user = 2;
    let env = rt.block_on(Env::new(spec, faulty_chat(), creating_accounts()));
    let worker = rt.block_on(env.start_worker(4));
    let site = rt.block_on(async {
        env.sync_all().await;
        env.drain().await;
        env.assert_converged().await;
        let users: Vec<i64> = (env.fixture.first_user_id..=env.fixture.last_user_id)
            .take(30)
            .collect();
        let rooms: Vec<i64> = env.live_cmids().await.into_iter().map(|(c, _)| c).collect();
        Site {
            users,
            courses: env.fixture.course_ids.clone(),
            rooms,
        }
    });

    let strategy = (
        proptest::collection::vec(op(), 1..7),
        any::<u64>(),
        0usize..4,
    );
    let mut runner = TestRunner::new(Config {
        cases: 6,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(ops, shuffle_seed, dups)| {
            rt.block_on(async {
                let mut jobs = Vec::new();
                for op in &ops {
                    apply(&env, &site, op, &mut jobs).await;
                }
                // Reorder and duplicate: harmless for level-triggered handlers.
                let mut order: Vec<usize> = (0..jobs.len()).collect();
                let mut s = shuffle_seed | 1;
                for i in (1..order.len()).rev() {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    order.swap(i, (s % (i as u64 + 1)) as usize);
                }
                for &i in order.iter().chain(order.iter().take(dups)) {
                    env.enqueue_raw(&jobs[i].0, jobs[i].1.clone()).await;
                }
                env.drain().await;
                let dead = env.dead_jobs().await;
                assert!(dead.is_empty(), "dead jobs after {ops:?}: {dead:?}");
                env.assert_converged().await;
            });
            Ok(())
        })
        .unwrap();
    rt.block_on(worker.stop());
}
