//! The committed Moodle DDL matches what the generator makes from the in-repo XMLDB copies,
//! and creating the schema is idempotent and prefix-aware.
#![allow(clippy::unwrap_used)]

use rcjobs_moodle::{schema, Prefix};
use rcjobs_testkit::TestDb;

fn xml(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("xmldb")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn committed_sql_is_what_the_generator_makes() {
    let generated = schema::generate(
        &xml("lib_db_install.xml"),
        &xml("mod_rocketchat_install.xml"),
        &xml("tool_recyclebin_install.xml"),
    )
    .unwrap();
    assert!(
        generated == schema::SCHEMA_SQL,
        "sql/moodle_schema.sql is stale: run `cargo run -p rcjobs-moodle --example gen_moodle_ddl`"
    );
}

#[test]
fn type_mapping_follows_moodle_postgres_generator() {
    let sql = schema::SCHEMA_SQL;
    // int(1) flags are smallint, int(10) ids/times bigint, sequences bigserial.
    assert!(sql.contains("    deleted SMALLINT NOT NULL DEFAULT 0,"));
    assert!(sql.contains("    nextruntime BIGINT NOT NULL,"));
    assert!(sql.contains("    attemptsavailable SMALLINT,"));
    assert!(sql.contains("    id BIGSERIAL,"));
    // NOT NULL char without default gets DEFAULT ''; nullable char has none.
    assert!(sql.contains("    rocketchatid VARCHAR(24) NOT NULL DEFAULT '',"));
    assert!(sql.contains("    moderatorroles VARCHAR(255),"));
    // number(l,d) -> numeric.
    assert!(
        sql.contains("    customdec1 NUMERIC(12,7),"),
        "enrol.customdec1 number(12,7)"
    );
    // Keys: FK -> plain index, unique key -> unique index, no FK constraints at all.
    assert!(sql.contains(
        "CREATE INDEX IF NOT EXISTS {prefix}roleassi_rol_ix ON {prefix}role_assignments (roleid);"
    ));
    assert!(sql.contains("CREATE UNIQUE INDEX IF NOT EXISTS {prefix}groumemb_usegro_uix"));
    assert!(!sql.contains("FOREIGN KEY"));
    // varchar_pattern_ops hint.
    assert!(sql.contains(
        "{prefix}cont_pat_ix_pattern ON {prefix}context USING btree (path varchar_pattern_ops)"
    ));
}

#[test]
fn prefixes_are_validated() {
    for ok in ["mdl_", "m", "moodle2_", "a_b_c"] {
        Prefix::new(ok).unwrap();
    }
    for bad in [
        "",
        "Mdl_",
        "1mdl",
        "mdl-",
        "mdl_;drop",
        "mdl_\"",
        "abcdefghijklmnopqrstu",
    ] {
        assert!(Prefix::new(bad).is_err(), "{bad:?} accepted");
    }
}

#[tokio::test]
async fn schema_creation_is_idempotent_and_prefix_aware() {
    let db = TestDb::new().await;
    let p = Prefix::new("mdl_").unwrap();
    assert!(!schema::exists(&db.pool, &p).await.unwrap());
    schema::create(&db.pool, &p).await.unwrap();
    sqlx::query("INSERT INTO mdl_user (username, mnethostid) VALUES ('keep', 1)")
        .execute(&db.pool)
        .await
        .unwrap();
    schema::create(&db.pool, &p).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM mdl_user")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 1, "re-creating keeps data");
    assert!(schema::exists(&db.pool, &p).await.unwrap());

    let other = Prefix::new("m2_").unwrap();
    schema::create(&db.pool, &other).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'm2\\_%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(tables as usize, schema::TABLES.len());
    // No FK constraints, as Moodle on Postgres.
    let fks: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(fks, 0);
    // Column types as Moodle makes them.
    let ty: String = sqlx::query_scalar(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'mdl_course_modules' AND column_name = 'deletioninprogress'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(ty, "smallint");
}
