//! Producer enqueue against a real queue schema.
#![allow(clippy::unwrap_used)]

use rcjobs_producer::*;
use rcjobs_testkit::TestDb;
use serde_json::json;

async fn setup() -> TestDb {
    let db = TestDb::new().await;
    rcjobs_queue::migrate(&db.pool).await.unwrap();
    register_kinds(&db.pool).await.unwrap();
    db
}

fn sync(cmid: i64) -> Job {
    Job::SynchronizeGroup(SynchronizeGroup {
        v: 1,
        cmid: Some(cmid),
        rocketchatid: None,
        coursecontextid: None,
        courseid: None,
        periodic: false,
    })
}

#[tokio::test]
async fn enqueue_stores_reduced_payload_and_keys() {
    let db = setup().await;
    let plugin = json!({
        "rocketchatid": "abc123", "moodlemembers": {"5": {"id": "5", "password": "$2y$10$secret"}},
        "moderatorrolesids": ["3"], "userrolesids": ["5"], "coursecontextid": 20
    });
    let job = Job::parse("synchronize_group", &plugin).unwrap();
    let e = enqueue(&db.pool, &job).await.unwrap();
    assert!(!e.deduplicated);
    let (payload, dedup): (serde_json::Value, Option<String>) =
        sqlx::query_as("SELECT payload, dedup_key FROM rcjobs.job WHERE id = $1")
            .bind(e.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        payload,
        json!({"v": 1, "rocketchatid": "abc123", "coursecontextid": 20})
    );
    assert_eq!(dedup.as_deref(), Some("sync:rc:abc123"));

    // Room-scoped sync: dedup among pending jobs, room lock as exclusion key.
    let a = enqueue(&db.pool, &sync(900)).await.unwrap();
    let b = enqueue(&db.pool, &sync(900)).await.unwrap();
    assert_eq!(a.id, b.id);
    assert!(b.deduplicated);
    let excl: Option<String> =
        sqlx::query_scalar("SELECT exclusion_key FROM rcjobs.job WHERE id = $1")
            .bind(a.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(excl.as_deref(), Some("room:900"));
}

#[tokio::test]
async fn enqueue_many_in_caller_transaction_is_all_or_nothing() {
    let db = setup().await;
    let jobs: Vec<(Job, EnqueueOptions)> = (1..=50)
        .map(|u| {
            (
                Job::parse("enrolment", &json!({"courseid": 2, "userid": u})).unwrap(),
                EnqueueOptions::default(),
            )
        })
        .collect();
    let mut tx = db.pool.begin().await.unwrap();
    let r = enqueue_many(&mut *tx, &jobs).await.unwrap();
    assert_eq!(r.len(), 50);
    tx.rollback().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs.job")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "rolled back with the caller's transaction");

    let mut tx = db.pool.begin().await.unwrap();
    enqueue_many(&mut *tx, &jobs).await.unwrap();
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs.job")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 50);

    // An invalid job in a batch rejects the batch before the database sees it.
    let bad = Job::UnenrolUserEverywhere(UserScope {
        v: 1,
        userid: -1,
        username: None,
    });
    let err = enqueue_many(
        &db.pool,
        &[
            (sync(1), EnqueueOptions::default()),
            (bad, EnqueueOptions::default()),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EnqueueError::InBatch { index: 1, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn sql_enqueue_checks_required_fields_of_registered_kinds() {
    let db = setup().await;
    let err = sqlx::query("SELECT rcjobs.enqueue('enrol_role_assign', '{\"courseid\": 2}'::jsonb)")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("roleid"), "{err}");
    let kinds = rcjobs_queue::list_kinds(&db.pool).await.unwrap();
    for k in Kind::ALL {
        assert!(
            kinds.iter().any(|s| s.name == k.as_str()),
            "{k} not registered"
        );
    }
}
