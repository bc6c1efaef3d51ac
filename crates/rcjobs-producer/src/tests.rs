#![allow(clippy::unwrap_used)]

use crate::*;
use serde_json::json;

/// A full `{user}` row as mod_rocketchat's `enrol_role_assign` stores it (Moodle's
/// `get_record` gives strings for every column), password hash included.
fn moodle_user_row() -> serde_json::Value {
    serde_json::from_str(
        r#"{
        "id": "1234", "auth": "manual", "confirmed": "1", "policyagreed": "0", "deleted": "0",
        "suspended": "0", "mnethostid": "1", "username": "jdupont@univ-paris1.fr",
        "password": "$2y$10$Q9xJgH0T8b2nUOvDq1oPZeYx6l4zE0m3pWvR7cK5sT2uA8bN1dF6G",
        "idnumber": "", "firstname": "Jeanne", "lastname": "Dupont", "email": "jeanne.dupont@univ-paris1.fr",
        "emailstop": "0", "phone1": "", "institution": "", "department": "", "address": "", "city": "Paris",
        "country": "FR", "lang": "fr", "calendartype": "gregorian", "theme": "", "timezone": "99",
        "firstaccess": "0", "lastaccess": "0", "lastlogin": "0", "currentlogin": "0", "lastip": "",
        "secret": "", "picture": "0", "description": null, "descriptionformat": "1", "mailformat": "1",
        "maildigest": "0", "maildisplay": "2", "autosubscribe": "1", "trackforums": "0",
        "timecreated": "1700000000", "timemodified": "1700000000", "trustbitmask": "0",
        "imagealt": null, "lastnamephonetic": null, "firstnamephonetic": null, "middlename": null,
        "alternatename": null, "moodlenetprofile": null
    }"#,
    )
    .unwrap()
}

#[test]
fn enrol_role_assign_plugin_shape_reduces_to_ids() {
    let customdata = json!({
        "courseid": "42",
        "roleid": "5",
        "moodleuser": moodle_user_row(),
        "context": {"contextlevel": 50, "id": "310", "instanceid": "42"}
    });
    let job = Job::parse("\\mod_rocketchat\\task\\enrol_role_assign", &customdata).unwrap();
    assert_eq!(job.kind(), Kind::EnrolRoleAssign);
    let stored = job.payload();
    assert_eq!(
        stored,
        json!({"v": 1, "userid": 1234, "roleid": 5, "courseid": 42,
               "context": {"id": 310, "contextlevel": 50, "instanceid": 42}})
    );
    let text = stored.to_string();
    assert!(!text.contains("$2y$"), "password hash leaked: {text}");
    assert!(!text.contains("jdupont"), "user row leaked: {text}");
    // The stored shape parses back to the same job.
    assert_eq!(Job::parse("enrol_role_assign", &stored).unwrap(), job);
}

#[test]
fn enrol_role_unassign_module_context_plugin_shape() {
    let customdata = json!({
        "courseid": 42, "roleid": 3, "moodleuser": moodle_user_row(),
        "context": {"contextlevel": 70, "id": 311, "instanceid": 900, "path": "/1/3/310/311", "depth": 4}
    });
    let job = Job::parse("enrol_role_unassign", &customdata).unwrap();
    let Job::EnrolRoleUnassign(p) = &job else {
        panic!("wrong variant")
    };
    assert_eq!(p.userid, 1234);
    assert_eq!(p.context.contextlevel, contextlevel::MODULE);
    assert_eq!(p.context.instanceid, 900);
    assert_eq!(job.keys().dedup_key.as_deref(), Some("role:70:900:1234"));
}

#[test]
fn synchronize_group_plugin_shape_drops_member_snapshot() {
    let mut members = serde_json::Map::new();
    for i in 1..=3 {
        let mut row = moodle_user_row();
        row["id"] = json!(i.to_string());
        members.insert(i.to_string(), row);
    }
    let customdata = json!({
        "rocketchatid": "Gxk2TzZ8pRzF5kQaY",
        "moodlemembers": members,
        "moderatorrolesids": ["3", "4"],
        "userrolesids": ["5"],
        "coursecontextid": "310"
    });
    let job = Job::parse("synchronize_group", &customdata).unwrap();
    assert_eq!(
        job.payload(),
        json!({"v": 1, "rocketchatid": "Gxk2TzZ8pRzF5kQaY", "coursecontextid": 310})
    );
    // Without a cmid the job cannot hold the room lock: the handler resolves and re-enqueues.
    assert_eq!(job.keys().exclusion_key, None);
    assert_eq!(
        job.keys().dedup_key.as_deref(),
        Some("sync:rc:Gxk2TzZ8pRzF5kQaY")
    );
}

#[test]
fn enrol_user_to_rocketchat_group_plugin_shape() {
    let customdata = json!({
        "rocketchatid": "Gxk2TzZ8pRzF5kQaY", "moderatorroles": "3,4", "userroles": "5",
        "userid": "77", "coursecontextid": 310
    });
    let job = Job::parse("enrol_user_to_rocketchat_group", &customdata).unwrap();
    assert_eq!(
        job.payload(),
        json!({"v": 1, "userid": 77, "rocketchatid": "Gxk2TzZ8pRzF5kQaY", "coursecontextid": 310})
    );
}

#[test]
fn user_everywhere_plugin_shapes() {
    for kind in ["synchronize_user_everywhere", "unenrol_user_everywhere"] {
        let job = Job::parse(kind, &json!({"userid": "12"})).unwrap();
        assert_eq!(job.payload(), json!({"v": 1, "userid": 12}));
        assert_eq!(job.keys().dedup_key.as_deref(), Some("user:12"));
    }
}

#[test]
fn room_scoped_jobs_hold_the_room_lock() {
    let sync = Job::SynchronizeGroup(SynchronizeGroup {
        v: 1,
        cmid: Some(900),
        rocketchatid: None,
        coursecontextid: None,
        courseid: None,
        periodic: false,
    });
    assert_eq!(
        sync.keys(),
        JobKeys {
            dedup_key: Some("sync:900".into()),
            exclusion_key: Some("room:900".into())
        }
    );
    let periodic = Job::SynchronizeGroup(SynchronizeGroup {
        v: 1,
        cmid: Some(900),
        rocketchatid: None,
        coursecontextid: None,
        courseid: None,
        periodic: true,
    });
    assert_eq!(periodic.keys().dedup_key.as_deref(), Some("rsync:900"));
    assert_eq!(periodic.keys().exclusion_key.as_deref(), Some("room:900"));
    let restore = Job::parse("restore", &json!({"cmid": 901})).unwrap();
    assert_eq!(restore.keys().exclusion_key.as_deref(), Some("room:901"));
    let bin = Job::parse(
        "recyclebin",
        &json!({"action": "purge", "cmid": "900", "binid": 7}),
    )
    .unwrap();
    assert_eq!(bin.keys().exclusion_key.as_deref(), Some("room:900"));
    assert_eq!(
        bin.keys().dedup_key.as_deref(),
        Some("recyclebin:purge:900")
    );
}

#[test]
fn recyclebin_patched_event_shape() {
    let job = Job::parse(
        "recyclebin",
        &json!({"action": "trash", "cmid": 900, "instanceid": 17, "rocketchatid": "abc123", "binid": 5}),
    )
    .unwrap();
    assert_eq!(
        job.payload(),
        json!({"v": 1, "action": "trash", "cmid": 900, "rocketchatid": "abc123", "binid": 5})
    );
}

#[test]
fn a_course_in_the_category_bin_is_one_course_wide_trash() {
    let job = Job::parse("recyclebin", &json!({"action": "trash", "courseid": 12})).unwrap();
    assert_eq!(
        job.keys().dedup_key.as_deref(),
        Some("recyclebin:trash:course:12")
    );
    assert_eq!(job.keys().exclusion_key, None);
    // only trash may name just the course: a restore or purge must say which room
    for action in ["restore", "purge"] {
        let e = Job::parse("recyclebin", &json!({"action": action, "courseid": 12})).unwrap_err();
        assert!(
            e.to_string()
                .contains("needs cmid, rocketchatid, binid or categorybinid"),
            "{e}"
        );
    }
}

#[test]
fn category_bin_items_have_their_own_keys() {
    // The two bins number their items independently: catbin:<id> never meets bin:<id>.
    for (action, key) in [
        ("restore", "recyclebin:restore:catbin:7"),
        ("purge", "recyclebin:purge:catbin:7"),
    ] {
        let job = Job::parse(
            "recyclebin",
            &json!({"action": action, "categorybinid": 7, "courseid": 40}),
        )
        .unwrap();
        assert_eq!(job.keys().dedup_key.as_deref(), Some(key));
        assert_eq!(job.keys().exclusion_key, None);
    }
    let bin = Job::parse("recyclebin", &json!({"action": "purge", "binid": 7})).unwrap();
    assert_eq!(
        bin.keys().dedup_key.as_deref(),
        Some("recyclebin:purge:bin:7")
    );
    // Per-room trash of a course in the category bin: the room lock, and the name kept.
    let job = Job::parse(
        "recyclebin",
        &json!({"action": "trash", "cmid": 9, "courseid": 2, "categorybinid": 7, "name": "Chat", "instanceid": 4, "rocketchatid": ""}),
    )
    .unwrap();
    assert_eq!(job.keys().exclusion_key.as_deref(), Some("room:9"));
    assert_eq!(
        job.payload(),
        json!({"v": 1, "action": "trash", "cmid": 9, "courseid": 2, "categorybinid": 7, "name": "Chat"})
    );
}

#[test]
fn clean_history_dedups_per_room() {
    let job = Job::parse(
        "clean_history",
        &json!({"cmid": 9, "courseid": 2, "rocketchatid": "", "latest": 1700000000}),
    )
    .unwrap();
    let keys = job.keys();
    assert_eq!(keys.dedup_key.as_deref(), Some("clean_history:9"));
    assert_eq!(keys.exclusion_key.as_deref(), Some("room:9"));
    let course = Job::parse("clean_history", &json!({"courseid": 2})).unwrap();
    assert_eq!(
        course.keys().dedup_key.as_deref(),
        Some("clean_history:course:2")
    );
    assert_eq!(course.keys().exclusion_key, None);
    let e = Job::parse("clean_history", &json!({"latest": 5})).unwrap_err();
    assert!(
        e.to_string()
            .contains("needs cmid, rocketchatid or courseid"),
        "{e}"
    );
}

#[test]
fn invalid_payloads_are_clear_errors() {
    let e = Job::parse("synchronize_group", &json!({})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "synchronize_group: invalid payload: needs cmid or rocketchatid"
    );

    let e = Job::parse("enrolment", &json!({"courseid": 2, "useridd": 3})).unwrap_err();
    assert!(e.to_string().contains("unknown field `useridd`"), "{e}");

    let e = Job::parse("enrolment", &json!([1, 2])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "enrolment: payload must be a JSON object, got array"
    );

    let e = Job::parse(
        "enrol_role_assign",
        &json!({"roleid": 5, "context": {"contextlevel": 50, "instanceid": 2}}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing userid"), "{e}");

    let e = Job::parse("unenrol_user_everywhere", &json!({"userid": "x1"})).unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");

    let e = Job::parse("unenrol_user_everywhere", &json!({"userid": -4})).unwrap_err();
    assert!(e.to_string().contains("positive id"), "{e}");

    let e = Job::parse("unenrol_user_everywhere", &json!({"v": 2, "userid": 4})).unwrap_err();
    assert!(e.to_string().contains("version 2 is not supported"), "{e}");

    let e = Job::parse("recyclebin", &json!({"action": "shred", "cmid": 1})).unwrap_err();
    assert!(e.to_string().contains("unknown variant `shred`"), "{e}");

    let e = Job::parse("synchronize_group", &json!({"rocketchatid": "a b;drop"})).unwrap_err();
    assert!(e.to_string().contains("not a room id"), "{e}");

    let e = Job::parse("no_such_kind", &json!({})).unwrap_err();
    assert!(matches!(e, PayloadError::UnknownKind(_)));
}

#[test]
fn errors_never_echo_user_rows() {
    // A user row with a bad id: the message names the field, not the row's contents.
    let mut row = moodle_user_row();
    row["id"] = json!("not-a-number");
    let e = Job::parse(
        "enrol_role_assign",
        &json!({"roleid": 5, "moodleuser": row, "context": {"contextlevel": 50, "instanceid": 2}}),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains("$2y$") && !msg.contains("Dupont"), "{msg}");
}

#[test]
fn every_kind_round_trips_and_has_a_spec() {
    let samples = [
        json!({"userid": 1, "roleid": 5, "context": {"contextlevel": 50, "instanceid": 2}}),
        json!({"userid": 1, "roleid": 5, "context": {"contextlevel": 70, "instanceid": 9}}),
        json!({"courseid": 2, "userid": 1}),
        json!({"userid": 1, "cmid": 9}),
        json!({"cmid": 9}),
        json!({"userid": 1}),
        json!({"userid": 1}),
        json!({"courseid": 2}),
        json!({"action": "restore", "rocketchatid": "r1"}),
        json!({"period_start": 1700000000, "period_secs": 3600}),
        json!({"cmid": 9, "latest": 1700000000}),
    ];
    for (kind, sample) in Kind::ALL.into_iter().zip(samples) {
        let job = Job::parse_kind(kind, &sample).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(job.kind(), kind);
        job.validate().unwrap();
        let stored = job.payload();
        assert_eq!(stored["v"], json!(1), "{kind}");
        assert_eq!(Job::parse(kind.as_str(), &stored).unwrap(), job);
        for f in kind.required_fields() {
            assert!(
                stored.get(f).is_some(),
                "{kind}: required field {f} missing from stored shape"
            );
        }
        assert_eq!(kind.as_str().parse::<Kind>().unwrap(), kind);
    }
    assert_eq!(kind_specs().len(), Kind::ALL.len());
}

#[test]
fn trigger_payloads_of_rcjobs_moodle_parse() {
    // Shapes written by rcjobs-moodle's trigger set (sql/triggers_*.sql).
    let samples = [
        (
            "synchronize_user_everywhere",
            json!({"userid": 5, "username": "jdupont"}),
        ),
        (
            "restore",
            json!({"cmid": 9, "courseid": 2, "instanceid": 4, "rocketchatid": "abc"}),
        ),
        (
            "recyclebin",
            json!({"action": "purge", "binid": 3, "courseid": 2, "name": "Chat"}),
        ),
        (
            "recyclebin",
            json!({"action": "trash", "cmid": 9, "courseid": 2, "instanceid": 4, "rocketchatid": null}),
        ),
        (
            "recyclebin",
            json!({"action": "restore", "categorybinid": 3, "courseid": 2}),
        ),
        ("recyclebin", json!({"action": "purge", "categorybinid": 3})),
        (
            "clean_history",
            json!({"cmid": 9, "courseid": 2, "rocketchatid": "abc", "latest": 1700000000}),
        ),
        (
            "synchronize_group",
            json!({"rocketchatid": "abc", "cmid": 9, "courseid": 2, "coursecontextid": 30}),
        ),
        (
            "synchronize_group",
            json!({"rocketchatid": "abc", "coursecontextid": 30}),
        ),
        (
            "enrolment",
            json!({"userid": 5, "courseid": 2, "enrolid": 7}),
        ),
        (
            "enrol_user_to_rocketchat_group",
            json!({"rocketchatid": "abc", "userid": 5, "coursecontextid": 30}),
        ),
        (
            "enrol_role_assign",
            json!({"courseid": 2, "roleid": 5, "userid": 5, "context": {"id": 30, "contextlevel": 50, "instanceid": 2}}),
        ),
    ];
    for (kind, payload) in samples {
        Job::parse(kind, &payload).unwrap_or_else(|e| panic!("{kind} {payload}: {e}"));
    }
}
