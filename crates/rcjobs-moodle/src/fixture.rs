//! A deterministic synthetic Moodle site, and a bulk "mass enrolment", for tests, the demo and
//! benchmarks. **Writes Moodle tables**: never used by the worker.
//!
//! The site: categories, courses, one or two `rocketchat` activities per course (with
//! `course_modules` and module `context` rows and the plugin's role mappings), the standard
//! roles, enrol instances of several methods (manual, self, cohort, flatfile; some disabled),
//! user enrolments with time windows and suspensions, role assignments at course, module and
//! category level, cohorts with members, some suspended and deleted users. The same seed gives
//! the same site. Rows are generated in Rust; the big tables (users, contexts, enrolments,
//! role assignments, cohort members) are sent with `COPY`, the others with `UNNEST` inserts.
//! Ids are explicit and continue after the tables' current maximum, so a fixture can be added
//! to an existing schema.

mod bulk;

use crate::{Prefix, Result};
use bulk::{drop_indexes_for_load, CopyRows, Val};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureSpec {
    /// Number of users.
    pub users: u32,
    /// Number of (populated) courses.
    pub courses: u32,
    /// Seed: the same seed and spec give the same site.
    pub seed: u64,
    /// Courses each user is enrolled in (capped at `courses`).
    pub enrolments_per_user: u32,
    /// Extra courses with chat activities and enrol instances but **no** enrolments (targets
    /// for [`mass_enrol`]).
    pub empty_courses: u32,
    /// Reference time (unix seconds) for enrolment windows: some enrolments start after it,
    /// some ended before it.
    pub now: i64,
}

impl FixtureSpec {
    /// A site of `users` users and `courses` courses, 10 enrolments per user, no empty course.
    pub fn new(users: u32, courses: u32, seed: u64) -> FixtureSpec {
        FixtureSpec {
            users,
            courses,
            seed,
            enrolments_per_user: 10,
            empty_courses: 0,
            now: crate::unix_now(),
        }
    }
}

/// Role ids of the standard Moodle roles (created if missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardRoles {
    /// `manager`.
    pub manager: i64,
    /// `coursecreator`.
    pub coursecreator: i64,
    /// `editingteacher`.
    pub editingteacher: i64,
    /// `teacher` (non-editing).
    pub teacher: i64,
    /// `student`.
    pub student: i64,
    /// `guest`.
    pub guest: i64,
    /// `user` (authenticated user).
    pub user: i64,
}

/// What was generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureSummary {
    /// Ids of the generated users are `first_user_id ..= last_user_id`.
    pub first_user_id: i64,
    /// Last generated user id.
    pub last_user_id: i64,
    /// Ids of the populated courses.
    pub course_ids: Vec<i64>,
    /// Ids of the courses without enrolments.
    pub empty_course_ids: Vec<i64>,
    /// Categories created.
    pub categories: u64,
    /// Chat activities created.
    pub rooms: u64,
    /// `enrol` rows created.
    pub enrol_instances: u64,
    /// `user_enrolments` rows created.
    pub user_enrolments: u64,
    /// `role_assignments` rows created.
    pub role_assignments: u64,
    /// Cohorts created.
    pub cohorts: u64,
    /// `cohort_members` rows created.
    pub cohort_members: u64,
    /// Role ids.
    pub roles: StandardRoles,
    /// Wall time taken.
    pub elapsed: Duration,
}

/// SplitMix64: tiny, fast, and stable across library versions (so seeds stay meaningful).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `permille / 1000`.
    fn chance(&mut self, permille: u64) -> bool {
        self.below(1000) < permille
    }
}

const FIRST: &[&str] = &[
    "Ana", "Bruno", "Chloé", "David", "Emma", "Farid", "Greta", "Hugo", "Inès", "Jules", "Kim",
    "Léa", "Malik", "Nora", "Oscar", "Paula",
];
const LAST: &[&str] = &[
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "García", "Müller",
];
const ID_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";

fn group_id(rng: &mut Rng) -> String {
    (0..17)
        .map(|_| ID_ALPHABET[rng.below(ID_ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn q(prefix: &Prefix, sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(prefix.apply(sql))
}

async fn max_id(conn: &mut PgConnection, prefix: &Prefix, table: &str) -> Result<i64> {
    let sql = format!("SELECT coalesce(max(id), 0) FROM {{prefix}}{table}");
    Ok(sqlx::query_scalar(q(prefix, &sql)).fetch_one(conn).await?)
}

/// Makes sure the standard roles exist and returns their ids.
pub async fn ensure_roles(conn: &mut PgConnection, prefix: &Prefix) -> Result<StandardRoles> {
    let wanted = [
        ("manager", "manager"),
        ("coursecreator", "coursecreator"),
        ("editingteacher", "editingteacher"),
        ("teacher", "teacher"),
        ("student", "student"),
        ("guest", "guest"),
        ("user", "user"),
        ("frontpage", "frontpage"),
    ];
    for (short, arch) in wanted {
        sqlx::query(q(
            prefix,
            "INSERT INTO {prefix}role (name, shortname, description, sortorder, archetype)
             SELECT '', $1, '', coalesce((SELECT max(sortorder) FROM {prefix}role), 0) + 1, $2
              WHERE NOT EXISTS (SELECT 1 FROM {prefix}role WHERE shortname = $1)",
        ))
        .bind(short)
        .bind(arch)
        .execute(&mut *conn)
        .await?;
    }
    let mut ids = [0i64; 7];
    for (slot, short) in ids.iter_mut().zip([
        "manager",
        "coursecreator",
        "editingteacher",
        "teacher",
        "student",
        "guest",
        "user",
    ]) {
        *slot = sqlx::query_scalar(q(
            prefix,
            "SELECT id FROM {prefix}role WHERE shortname = $1",
        ))
        .bind(short)
        .fetch_one(&mut *conn)
        .await?;
    }
    let [manager, coursecreator, editingteacher, teacher, student, guest, user] = ids;
    Ok(StandardRoles {
        manager,
        coursecreator,
        editingteacher,
        teacher,
        student,
        guest,
        user,
    })
}

/// Base rows every Moodle site has: system context, front-page course, guest and admin users,
/// the `rocketchat` module. Returns (system context id, rocketchat module id).
async fn ensure_site(conn: &mut PgConnection, prefix: &Prefix, now: i64) -> Result<(i64, i64)> {
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}context (contextlevel, instanceid, depth, path, locked)
         VALUES (10, 0, 1, NULL, 0) ON CONFLICT (contextlevel, instanceid) DO NOTHING",
    ))
    .execute(&mut *conn)
    .await?;
    let sys: i64 = sqlx::query_scalar(q(
        prefix,
        "UPDATE {prefix}context SET path = '/' || id WHERE contextlevel = 10 AND instanceid = 0 RETURNING id",
    ))
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}course (category, fullname, shortname, summary, format, timecreated, timemodified)
         SELECT 0, 'Synthetic site', 'site', '', 'site', $1, $1
          WHERE NOT EXISTS (SELECT 1 FROM {prefix}course WHERE category = 0)",
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    for (username, first) in [("guest", "Guest user"), ("admin", "Admin")] {
        sqlx::query(q(
            prefix,
            "INSERT INTO {prefix}user (auth, confirmed, mnethostid, username, firstname, lastname, email, timecreated, timemodified)
             SELECT 'manual', 1, 1, $1, $2, '', $1 || '@example.edu', $3, $3
              WHERE NOT EXISTS (SELECT 1 FROM {prefix}user WHERE username = $1 AND mnethostid = 1)",
        ))
        .bind(username)
        .bind(first)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}modules (name, cron, lastcron, search, visible)
         SELECT 'rocketchat', 0, 0, '', 1 WHERE NOT EXISTS (SELECT 1 FROM {prefix}modules WHERE name = 'rocketchat')",
    ))
    .execute(&mut *conn)
    .await?;
    let module: i64 = sqlx::query_scalar(q(
        prefix,
        "SELECT min(id) FROM {prefix}modules WHERE name = 'rocketchat'",
    ))
    .fetch_one(&mut *conn)
    .await?;
    Ok((sys, module))
}

/// Sets every generated table's id sequence past its maximum id (we insert explicit ids).
async fn fix_sequences(conn: &mut PgConnection, prefix: &Prefix) -> Result<()> {
    for t in crate::schema::TABLES {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{{prefix}}{t}', 'id'), coalesce((SELECT max(id) FROM {{prefix}}{t}), 0) + 1, false)"
        );
        sqlx::query(q(prefix, &sql)).execute(&mut *conn).await?;
    }
    Ok(())
}

/// `context` rows, loaded last (every other row's context is known by then).
struct Contexts(CopyRows);

impl Contexts {
    fn new() -> Contexts {
        Contexts(CopyRows::new(
            "{prefix}context (id, contextlevel, instanceid, path, depth, locked)",
        ))
    }

    /// Adds a context below `parent_path`; returns its path.
    fn push(
        &mut self,
        id: i64,
        level: i64,
        instance: i64,
        parent_path: &str,
        depth: i64,
    ) -> String {
        let path = format!("{parent_path}/{id}");
        self.0.row(&[
            Val::I(id),
            Val::I(level),
            Val::I(instance),
            Val::T(&path),
            Val::I(depth),
            Val::I(0),
        ]);
        path
    }
}

struct CourseGen {
    id: i64,
    ctx: i64,
    /// (enrol id, method, status)
    instances: Vec<(i64, &'static str, i16)>,
    cohort: Option<i64>,
    /// (cmid, module context id)
    rooms: Vec<(i64, i64)>,
}

/// Generates a site into an existing Moodle schema (see [`crate::schema::create`]).
pub async fn generate(
    pool: &PgPool,
    prefix: &Prefix,
    spec: &FixtureSpec,
) -> Result<FixtureSummary> {
    let started = Instant::now();
    let mut tx: Transaction<'_, Postgres> = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('rcjobs_moodle_fixture'))")
        .execute(&mut *tx)
        .await?;
    let now = spec.now;
    let roles = ensure_roles(&mut tx, prefix).await?;
    let (sys_ctx, module_id) = ensure_site(&mut tx, prefix, now).await?;
    let sys_path = format!("/{sys_ctx}");
    let mut rng = Rng(spec.seed ^ 0x5EED_0000_0000_0000);

    let mut next_ctx = max_id(&mut tx, prefix, "context").await?;
    let next_cat0 = max_id(&mut tx, prefix, "course_categories").await?;
    let next_course0 = max_id(&mut tx, prefix, "course").await?;
    let mut next_enrol = max_id(&mut tx, prefix, "enrol").await?;
    let mut next_cm = max_id(&mut tx, prefix, "course_modules").await?;
    let mut next_rc = max_id(&mut tx, prefix, "rocketchat").await?;
    let next_cohort0 = max_id(&mut tx, prefix, "cohort").await?;
    let next_user0 = max_id(&mut tx, prefix, "user").await?;
    let next_ue0 = max_id(&mut tx, prefix, "user_enrolments").await?;
    let next_ra0 = max_id(&mut tx, prefix, "role_assignments").await?;

    let total_courses = spec.courses + spec.empty_courses;
    let ncat = (total_courses / 50).max(1) as i64;
    let ncohort = (spec.courses / 10).max(1) as i64;
    let mut ctx = Contexts::new();
    // Other activity types, so `course_modules` and `context` look like a real site's (chat
    // rooms are a small fraction of the activities; every user has a user context).
    let mut other_modules = Vec::new();
    for name in ["forum", "assign", "resource"] {
        let id: i64 = sqlx::query_scalar(q(
            prefix,
            "WITH ins AS (INSERT INTO {prefix}modules (name, cron, lastcron, search, visible)
                          SELECT $1, 0, 0, '', 1 WHERE NOT EXISTS (SELECT 1 FROM {prefix}modules WHERE name = $1) RETURNING id)
             SELECT id FROM ins UNION ALL SELECT min(id) FROM {prefix}modules WHERE name = $1 LIMIT 1",
        ))
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        other_modules.push(id);
    }

    // Categories.
    let mut cat_ids = Vec::new();
    let mut cat_paths = Vec::new();
    let mut cat_ctx = Vec::new();
    for i in 1..=ncat {
        let id = next_cat0 + i;
        next_ctx += 1;
        cat_paths.push(ctx.push(next_ctx, 40, id, &sys_path, 2));
        cat_ctx.push(next_ctx);
        cat_ids.push(id);
    }
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}course_categories (id, name, idnumber, description, parent, sortorder, coursecount, visible, timemodified, depth, path)
         SELECT id, 'Category ' || id, 'CAT' || id, '', 0, id * 10000, 0, 1, $2, 1, '/' || id FROM UNNEST($1::bigint[]) AS t(id)",
    ))
    .bind(&cat_ids)
    .bind(now)
    .execute(&mut *tx)
    .await?;

    // Cohorts (system context).
    let cohort_ids: Vec<i64> = (1..=ncohort).map(|i| next_cohort0 + i).collect();
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}cohort (id, contextid, name, idnumber, description, descriptionformat, visible, component, timecreated, timemodified)
         SELECT id, $2, 'Cohort ' || id, 'COH' || id, '', 0, 1, '', $3, $3 FROM UNNEST($1::bigint[]) AS t(id)",
    ))
    .bind(&cohort_ids)
    .bind(sys_ctx)
    .bind(now)
    .execute(&mut *tx)
    .await?;

    // Courses, enrol instances, rooms.
    let mut courses: Vec<CourseGen> = Vec::new();
    let (mut c_id, mut c_cat, mut c_short) = (Vec::new(), Vec::new(), Vec::new());
    let (mut e_id, mut e_method, mut e_status, mut e_course, mut e_role, mut e_cint1, mut e_sort) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut r_id, mut r_course, mut r_name, mut r_gid, mut r_mods, mut r_users, mut r_emb) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut cm_id, mut cm_course, mut cm_instance, mut cm_visible) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut o_cm, mut o_course, mut o_module, mut o_instance) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=i64::from(total_courses) {
        let id = next_course0 + i;
        let cat = ((i - 1) % ncat) as usize;
        next_ctx += 1;
        let course_ctx = next_ctx;
        let course_path = ctx.push(course_ctx, 50, id, &cat_paths[cat], 3);
        c_id.push(id);
        c_cat.push(cat_ids[cat]);
        c_short.push(format!("C{id}"));
        let mut g = CourseGen {
            id,
            ctx: course_ctx,
            instances: Vec::new(),
            cohort: None,
            rooms: Vec::new(),
        };
        let mut add_instance =
            |method: &'static str, status: i16, cint1: Option<i64>, g: &mut CourseGen| {
                next_enrol += 1;
                e_id.push(next_enrol);
                e_method.push(method.to_string());
                e_status.push(status);
                e_course.push(id);
                e_role.push(roles.student);
                e_cint1.push(cint1);
                e_sort.push(g.instances.len() as i64);
                g.instances.push((next_enrol, method, status));
            };
        add_instance("manual", 0, None, &mut g);
        add_instance("self", if i % 4 == 0 { 1 } else { 0 }, None, &mut g);
        if i % 3 == 0 {
            let coh = cohort_ids[(i as usize / 3) % cohort_ids.len()];
            g.cohort = Some(coh);
            add_instance("cohort", 0, Some(coh), &mut g);
        }
        if i % 5 == 0 {
            add_instance("flatfile", if i % 10 == 0 { 1 } else { 0 }, None, &mut g);
        }
        let nrooms = if i % 4 == 1 { 2 } else { 1 };
        for k in 0..nrooms {
            next_rc += 1;
            next_cm += 1;
            next_ctx += 1;
            ctx.push(next_ctx, 70, next_cm, &course_path, 4);
            r_id.push(next_rc);
            r_course.push(id);
            r_name.push(if k == 0 {
                format!("Chat C{id}")
            } else {
                format!("Teachers' lounge C{id}")
            });
            r_gid.push(group_id(&mut rng));
            // Room 0: teachers moderate, students and non-editing teachers are members (the
            // plugin's defaults); every 7th also lets managers moderate. Room 1: students only.
            r_mods.push(if i % 7 == 0 {
                format!("{},{}", roles.editingteacher, roles.manager)
            } else {
                roles.editingteacher.to_string()
            });
            r_users.push(if k == 0 {
                format!("{},{}", roles.student, roles.teacher)
            } else {
                roles.student.to_string()
            });
            r_emb.push(1i16);
            cm_id.push(next_cm);
            cm_course.push(id);
            cm_instance.push(next_rc);
            cm_visible.push(if (i + k) % 20 == 0 { 0i16 } else { 1 });
            g.rooms.push((next_cm, next_ctx));
        }
        for (k, &module) in other_modules.iter().enumerate() {
            for n in 0..2 {
                next_cm += 1;
                next_ctx += 1;
                ctx.push(next_ctx, 70, next_cm, &course_path, 4);
                o_cm.push(next_cm);
                o_course.push(id);
                o_module.push(module);
                o_instance.push(i * 10 + (k as i64) * 2 + n);
            }
        }
        courses.push(g);
    }
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}course (id, category, sortorder, fullname, shortname, idnumber, summary, format, startdate, visible, timecreated, timemodified)
         SELECT id, cat, id, 'Course ' || short, short, short, '', 'topics', $4, 1, $4, $4
           FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) AS t(id, cat, short)",
    ))
    .bind(&c_id)
    .bind(&c_cat)
    .bind(&c_short)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}enrol (id, enrol, status, courseid, sortorder, roleid, customint1, timecreated, timemodified)
         SELECT * , $8::bigint, $8::bigint FROM UNNEST($1::bigint[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])",
    ))
    .bind(&e_id)
    .bind(&e_method)
    .bind(&e_status)
    .bind(&e_course)
    .bind(&e_sort)
    .bind(&e_role)
    .bind(&e_cint1)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}rocketchat (id, course, name, timecreated, timemodified, intro, introformat, rocketchatid, displaytype, embbeded, moderatorroles, userroles)
         SELECT id, course, name, $8, $8, '', 1, gid, 1, emb, mods, usrs
           FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::smallint[]) AS t(id, course, name, gid, mods, usrs, emb)",
    ))
    .bind(&r_id)
    .bind(&r_course)
    .bind(&r_name)
    .bind(&r_gid)
    .bind(&r_mods)
    .bind(&r_users)
    .bind(&r_emb)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}course_modules (id, course, module, instance, section, added, visible, visibleoncoursepage, visibleold, deletioninprogress)
         SELECT id, course, $5, inst, 0, $6, vis, 1, vis, 0
           FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::smallint[]) AS t(id, course, inst, vis)",
    ))
    .bind(&cm_id)
    .bind(&cm_course)
    .bind(&cm_instance)
    .bind(&cm_visible)
    .bind(module_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(q(
        prefix,
        "INSERT INTO {prefix}course_modules (id, course, module, instance, section, added, visible, visibleoncoursepage, visibleold, deletioninprogress)
         SELECT id, course, module, inst, 0, $5, 1, 1, 1, 0
           FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS t(id, course, module, inst)",
    ))
    .bind(&o_cm)
    .bind(&o_course)
    .bind(&o_module)
    .bind(&o_instance)
    .bind(now)
    .execute(&mut *tx)
    .await?;

    tracing::debug!(elapsed = ?started.elapsed(), "fixture: courses, rooms, enrol instances");
    // Users.
    let n_users = i64::from(spec.users);
    let first_user_id = next_user0 + 1;
    let last_user_id = next_user0 + n_users;
    // Indexes of the tables loaded below: dropped when the load dwarfs their contents,
    // rebuilt once at the end.
    let mut rebuild = drop_indexes_for_load(&mut tx, prefix, "user", n_users as u64).await?;
    let mut users = CopyRows::new(
        "{prefix}user (id, auth, confirmed, mnethostid, username, firstname, lastname, email, deleted, suspended, timecreated, timemodified)",
    );
    for id in first_user_id..=last_user_id {
        let deleted = rng.chance(10);
        let suspended = !deleted && rng.chance(20);
        let auth = if rng.chance(5) { "nologin" } else { "manual" };
        let first = FIRST[rng.below(FIRST.len() as u64) as usize];
        let last = LAST[rng.below(LAST.len() as u64) as usize];
        let (username, email) = if deleted {
            // What delete_user() leaves behind: username "email.timestamp", email an md5-ish hash.
            (
                format!("user{id}@example.edu.{now}"),
                format!(
                    "{:032x}",
                    u128::from(rng.next()) << 64 | u128::from(rng.next())
                ),
            )
        } else {
            (format!("user{id}"), format!("user{id}@example.edu"))
        };
        users.row(&[
            Val::I(id),
            Val::T(auth),
            Val::I(1),
            Val::I(1),
            Val::T(&username),
            Val::T(first),
            Val::T(last),
            Val::T(&email),
            Val::I(i64::from(deleted)),
            Val::I(i64::from(suspended)),
            Val::I(now),
            Val::I(now),
        ]);
        next_ctx += 1;
        ctx.push(next_ctx, 30, id, &sys_path, 2);
    }
    users.load(&mut tx, prefix).await?;

    tracing::debug!(elapsed = ?started.elapsed(), "fixture: users");
    // Enrolments and role assignments.
    let populated = spec.courses as usize;
    let per_user = (spec.enrolments_per_user as usize).min(populated);
    let mut ue = CopyRows::new(
        "{prefix}user_enrolments (id, status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)",
    );
    let mut ra = CopyRows::new(
        "{prefix}role_assignments (id, roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)",
    );
    let mut assign = |role: i64, ctx: i64, uid: i64, comp: &str, item: i64| {
        let id = next_ra0 + ra.len() as i64 + 1;
        ra.row(&[
            Val::I(id),
            Val::I(role),
            Val::I(ctx),
            Val::I(uid),
            Val::I(now),
            Val::I(2),
            Val::T(comp),
            Val::I(item),
            Val::I(0),
        ]);
    };
    let mut members: HashSet<(i64, i64)> = HashSet::new();
    let mut chosen: Vec<usize> = Vec::with_capacity(per_user);
    for uid in first_user_id..=last_user_id {
        chosen.clear();
        while chosen.len() < per_user {
            let c = rng.below(populated as u64) as usize;
            if !chosen.contains(&c) {
                chosen.push(c);
            }
        }
        for &c in &chosen {
            let g = &courses[c];
            let roll = rng.below(100);
            let want = if roll < 70 {
                "manual"
            } else if roll < 80 {
                "self"
            } else if roll < 95 {
                "cohort"
            } else {
                "flatfile"
            };
            let &(enrol_id, method, _) = g
                .instances
                .iter()
                .find(|x| x.1 == want)
                .unwrap_or(&g.instances[0]);
            let status = i64::from(rng.chance(30));
            let w = rng.below(1000);
            let start = if w < 40 {
                now + 30 * 86_400
            } else {
                now - 86_400 * (1 + rng.below(300) as i64)
            };
            let end = if (40..80).contains(&w) {
                now - 86_400
            } else if (80..120).contains(&w) {
                now + 180 * 86_400
            } else {
                0
            };
            ue.row(&[
                Val::I(next_ue0 + ue.len() as i64 + 1),
                Val::I(status),
                Val::I(enrol_id),
                Val::I(uid),
                Val::I(start),
                Val::I(end),
                Val::I(2),
                Val::I(now),
                Val::I(now),
            ]);
            let (comp, item) = if method == "cohort" {
                ("enrol_cohort", enrol_id)
            } else {
                ("", 0)
            };
            if method == "cohort" {
                if let Some(coh) = g.cohort {
                    members.insert((coh, uid));
                }
            }
            let r = rng.below(1000);
            let role = if r < 880 {
                Some(roles.student)
            } else if r < 930 {
                Some(roles.teacher)
            } else if r < 990 {
                Some(roles.editingteacher)
            } else {
                None
            };
            if let Some(role) = role {
                assign(role, g.ctx, uid, comp, item);
            }
            // Module-level roles: moderator in one room only, or a member of the second room
            // via a module-level student role without any course role.
            if rng.chance(20) {
                assign(roles.editingteacher, g.rooms[0].1, uid, "", 0);
            }
        }
        // A few category managers.
        if rng.chance(2) {
            let cat = cat_ctx[rng.below(cat_ctx.len() as u64) as usize];
            assign(roles.manager, cat, uid, "", 0);
        }
    }
    tracing::debug!(elapsed = ?started.elapsed(), "fixture: generated enrolments in memory");
    for (t, rows) in [
        ("user_enrolments", ue.len()),
        ("role_assignments", ra.len()),
        ("context", ctx.0.len()),
    ] {
        rebuild |= drop_indexes_for_load(&mut tx, prefix, t, rows).await?;
    }
    let ue_count = ue.load(&mut tx, prefix).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "fixture: user_enrolments loaded");
    let ra_count = ra.load(&mut tx, prefix).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "fixture: role_assignments loaded");
    let mut members: Vec<(i64, i64)> = members.into_iter().collect();
    members.sort_unstable();
    let mut cm = CopyRows::new("{prefix}cohort_members (cohortid, userid, timeadded)");
    for &(coh, uid) in &members {
        cm.row(&[Val::I(coh), Val::I(uid), Val::I(now)]);
    }
    cm.load(&mut tx, prefix).await?;
    ctx.0.load(&mut tx, prefix).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "fixture: contexts and cohort members loaded");
    fix_sequences(&mut tx, prefix).await?;
    if rebuild {
        sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(prefix.apply(crate::schema::SCHEMA_SQL)))
            .execute(&mut *tx)
            .await?;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "fixture: indexes rebuilt");
    tx.commit().await?;
    for t in [
        "user",
        "context",
        "role_assignments",
        "cohort_members",
        "modules",
        "user_enrolments",
        "enrol",
        "course_modules",
        "rocketchat",
        "course",
    ] {
        sqlx::query(q(prefix, &format!("ANALYZE {{prefix}}{t}")))
            .execute(pool)
            .await?;
    }

    let populated_ids: Vec<i64> = courses.iter().take(populated).map(|c| c.id).collect();
    let empty_ids: Vec<i64> = courses.iter().skip(populated).map(|c| c.id).collect();
    Ok(FixtureSummary {
        first_user_id,
        last_user_id,
        course_ids: populated_ids,
        empty_course_ids: empty_ids,
        categories: cat_ids.len() as u64,
        rooms: r_id.len() as u64,
        enrol_instances: e_id.len() as u64,
        user_enrolments: ue_count,
        role_assignments: ra_count,
        cohorts: cohort_ids.len() as u64,
        cohort_members: members.len() as u64,
        roles,
        elapsed: started.elapsed(),
    })
}

/// Which users a [`mass_enrol`] enrols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSet {
    /// These user ids.
    Ids(Vec<i64>),
    /// Every user id in `first ..= last`.
    Range {
        /// First id.
        first: i64,
        /// Last id (inclusive).
        last: i64,
    },
}

/// Enrols many users into `course_id` in one SQL statement, the way a cohort or flat-file sync
/// run does in bulk: `user_enrolments` rows on the course's enabled `manual` instance (created
/// if missing) and a `role_assignments` row per new enrolment at the course context with role
/// `role_shortname`. Deleted users are skipped, existing enrolments kept. Returns the number of
/// users newly enrolled.
pub async fn mass_enrol(
    pool: &PgPool,
    prefix: &Prefix,
    course_id: i64,
    users: &UserSet,
    role_shortname: &str,
) -> Result<u64> {
    let now = crate::unix_now();
    let mut tx = pool.begin().await?;
    let role: Option<i64> = sqlx::query_scalar(q(
        prefix,
        "SELECT id FROM {prefix}role WHERE shortname = $1",
    ))
    .bind(role_shortname)
    .fetch_optional(&mut *tx)
    .await?;
    let role = role.ok_or_else(|| crate::MoodleError::Missing(format!("role {role_shortname}")))?;
    let ctx: Option<i64> = sqlx::query_scalar(q(
        prefix,
        "SELECT id FROM {prefix}context WHERE contextlevel = 50 AND instanceid = $1",
    ))
    .bind(course_id)
    .fetch_optional(&mut *tx)
    .await?;
    let ctx =
        ctx.ok_or_else(|| crate::MoodleError::Missing(format!("context of course {course_id}")))?;
    let existing: Option<i64> = sqlx::query_scalar(q(
        prefix,
        "SELECT min(id) FROM {prefix}enrol WHERE courseid = $1 AND enrol = 'manual' AND status = 0",
    ))
    .bind(course_id)
    .fetch_one(&mut *tx)
    .await?;
    let enrol_id = match existing {
        Some(id) => id,
        None => {
            sqlx::query_scalar(q(
                prefix,
                "INSERT INTO {prefix}enrol (enrol, status, courseid, sortorder, roleid, timecreated, timemodified)
                 VALUES ('manual', 0, $1, 0, $2, $3, $3) RETURNING id",
            ))
            .bind(course_id)
            .bind(role)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
        }
    };
    let (cond, ids, first, last) = match users {
        UserSet::Ids(v) => ("u.id = ANY($5)", v.clone(), 0, 0),
        UserSet::Range { first, last } => (
            "u.id BETWEEN $6 AND $7 AND cardinality($5::bigint[]) = 0",
            Vec::new(),
            *first,
            *last,
        ),
    };
    let sql = "WITH ue AS (
           INSERT INTO {prefix}user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
           SELECT 0, $1, u.id, $4, 0, 2, $4, $4
             FROM {prefix}user u
            WHERE u.deleted = 0
              AND COND
           ON CONFLICT (enrolid, userid) DO NOTHING
           RETURNING userid
         ), ra AS (
           INSERT INTO {prefix}role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
           SELECT $2, $3, ue.userid, $4, 2, '', 0, 0 FROM ue
            WHERE NOT EXISTS (SELECT 1 FROM {prefix}role_assignments x
                               WHERE x.userid = ue.userid AND x.contextid = $3 AND x.roleid = $2)
           RETURNING 1
         )
         SELECT count(*) FROM ue"
        .replace("COND", cond);
    let n: i64 = sqlx::query_scalar(q(prefix, &sql))
        .bind(enrol_id)
        .bind(role)
        .bind(ctx)
        .bind(now)
        .bind(ids)
        .bind(first)
        .bind(last)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n as u64)
}
