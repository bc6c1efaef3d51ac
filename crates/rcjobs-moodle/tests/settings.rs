//! mod_rocketchat's settings read from `config_plugins`, and a retention edit on a
//! `rocketchat` row captured as a room sync (change-capture trigger).
#![allow(clippy::unwrap_used)]

use rcjobs_moodle::fixture::{self, FixtureSpec};
use rcjobs_moodle::settings::RetentionDefaults;
use rcjobs_moodle::triggers::{self, TriggerMode};
use rcjobs_moodle::{schema, MoodleDb, Prefix};
use rcjobs_testkit::TestDb;

async fn site() -> (TestDb, Prefix, MoodleDb) {
    let db = TestDb::new().await;
    let p = Prefix::new("mdl_").unwrap();
    schema::create(&db.pool, &p).await.unwrap();
    let mut spec = FixtureSpec::new(20, 2, 7);
    spec.enrolments_per_user = 1;
    fixture::generate(&db.pool, &p, &spec).await.unwrap();
    let m = MoodleDb::new(db.pool.clone(), "mdl_").unwrap();
    (db, p, m)
}

#[tokio::test]
async fn plugin_settings_come_from_config_plugins() {
    let (db, _p, m) = site().await;
    let none = m.plugin_settings().await.unwrap();
    assert_eq!(none.group_name_format, None);
    assert_eq!(none.create_accounts, None);
    assert_eq!(none.retention_feature, None);
    assert_eq!(none.site_shortname.as_deref(), Some("site"));
    for (name, value) in [
        ("groupnametoformat", "{$a->moodleshortname}_{$a->moduleid}"),
        ("create_user_account_if_not_exists", "1"),
        ("retentionfeature", "1"),
        ("retentionenabled", "1"),
        ("maxage", "30"),
        ("filesonly", "0"),
        ("excludepinned", "maybe"),
    ] {
        sqlx::query("INSERT INTO mdl_config_plugins (plugin, name, value) VALUES ($1, $2, $3)")
            .bind("mod_rocketchat")
            .bind(name)
            .bind(value)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    // Another plugin's row of the same name is not ours.
    sqlx::query(
        "INSERT INTO mdl_config_plugins (plugin, name, value) VALUES ('mod_forum', 'maxage', 'x')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let s = m.plugin_settings().await.unwrap();
    assert_eq!(
        s.group_name_format.as_deref(),
        Some("{$a->moodleshortname}_{$a->moduleid}")
    );
    assert_eq!(s.create_accounts, Some(true));
    assert_eq!(s.retention_feature, Some(true));
    assert_eq!(
        s.retention_defaults,
        RetentionDefaults {
            enabled: Some(true),
            max_age_days: Some(30),
            files_only: Some(false),
            exclude_pinned: None,
        }
    );
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("excludepinned"));
}

#[tokio::test]
async fn a_site_without_config_plugins_reads_no_values() {
    let (db, _p, m) = site().await;
    sqlx::query("DROP TABLE mdl_config_plugins")
        .execute(&db.pool)
        .await
        .unwrap();
    let s = m.plugin_settings().await.unwrap();
    assert_eq!(s.group_name_format, None);
    assert!(s.warnings.is_empty());
}

#[tokio::test]
async fn a_retention_edit_enqueues_a_room_sync() {
    let (db, p, _m) = site().await;
    let pool = &db.pool;
    rcjobs_queue::migrate(pool).await.unwrap();
    rcjobs_queue::register_kind(pool, &rcjobs_queue::KindSpec::new("synchronize_group"))
        .await
        .unwrap();
    triggers::install(pool, &p, TriggerMode::ChangeCapture)
        .await
        .unwrap();
    let (cmid, instance_id): (i64, i64) = sqlx::query_as(
        "SELECT cm.id, cm.instance FROM mdl_course_modules cm
           JOIN mdl_modules md ON md.id = cm.module AND md.name = 'rocketchat'
          ORDER BY cm.id LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM rcjobs.job")
        .execute(pool)
        .await
        .unwrap();
    let jobs = || async {
        // What the triggers captured, moved into the queue as the workers' relay does.
        rcjobs_moodle::outbox::relay_all(pool, pool, &p)
            .await
            .unwrap();
        let v: Vec<(String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT kind, dedup_key, exclusion_key FROM rcjobs.job ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap();
        sqlx::query("DELETE FROM rcjobs.job")
            .execute(pool)
            .await
            .unwrap();
        v
    };
    let expected = vec![(
        "synchronize_group".to_owned(),
        Some(format!("sync:{}", cmid)),
        Some(format!("room:{}", cmid)),
    )];
    for set in [
        "maxage = maxage + 7",
        "retentionenabled = 1 - retentionenabled",
        "filesonly = 1 - filesonly",
        "excludepinned = 1 - excludepinned",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE mdl_rocketchat SET {set} WHERE id = $1"
        )))
        .bind(instance_id)
        .execute(pool)
        .await
        .unwrap();
        assert_eq!(jobs().await, expected, "{set}");
    }
    // A change the worker does not care about enqueues nothing.
    sqlx::query("UPDATE mdl_rocketchat SET popupheight = 400 WHERE id = $1")
        .bind(instance_id)
        .execute(pool)
        .await
        .unwrap();
    assert!(jobs().await.is_empty());
}
