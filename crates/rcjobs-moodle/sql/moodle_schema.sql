-- Moodle tables (PostgreSQL), generated from Moodle XMLDB by rcjobs_moodle::xmldb.
-- Do not edit: regenerate with `cargo run -p rcjobs-moodle --example gen_moodle_ddl`.
-- {prefix} is replaced by the validated Moodle table prefix at run time.

-- table config
CREATE TABLE IF NOT EXISTS {prefix}config (
    id BIGSERIAL,
    name VARCHAR(255) NOT NULL DEFAULT '',
    value TEXT NOT NULL,
CONSTRAINT {prefix}conf_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}config IS 'Moodle configuration variables';
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}conf_nam_uix ON {prefix}config (name);

-- table config_plugins
CREATE TABLE IF NOT EXISTS {prefix}config_plugins (
    id BIGSERIAL,
    plugin VARCHAR(100) NOT NULL DEFAULT 'core',
    name VARCHAR(100) NOT NULL DEFAULT '',
    value TEXT NOT NULL,
CONSTRAINT {prefix}confplug_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}config_plugins IS 'Moodle modules and plugins configuration variables';
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}confplug_plunam_uix ON {prefix}config_plugins (plugin, name);

-- table user
CREATE TABLE IF NOT EXISTS {prefix}user (
    id BIGSERIAL,
    auth VARCHAR(20) NOT NULL DEFAULT 'manual',
    confirmed SMALLINT NOT NULL DEFAULT 0,
    policyagreed SMALLINT NOT NULL DEFAULT 0,
    deleted SMALLINT NOT NULL DEFAULT 0,
    suspended SMALLINT NOT NULL DEFAULT 0,
    mnethostid BIGINT NOT NULL DEFAULT 0,
    username VARCHAR(100) NOT NULL DEFAULT '',
    password VARCHAR(255) NOT NULL DEFAULT '',
    idnumber VARCHAR(255) NOT NULL DEFAULT '',
    firstname VARCHAR(100) NOT NULL DEFAULT '',
    lastname VARCHAR(100) NOT NULL DEFAULT '',
    email VARCHAR(100) NOT NULL DEFAULT '',
    emailstop SMALLINT NOT NULL DEFAULT 0,
    phone1 VARCHAR(20) NOT NULL DEFAULT '',
    phone2 VARCHAR(20) NOT NULL DEFAULT '',
    institution VARCHAR(255) NOT NULL DEFAULT '',
    department VARCHAR(255) NOT NULL DEFAULT '',
    address VARCHAR(255) NOT NULL DEFAULT '',
    city VARCHAR(120) NOT NULL DEFAULT '',
    country VARCHAR(2) NOT NULL DEFAULT '',
    lang VARCHAR(30) NOT NULL DEFAULT 'en',
    calendartype VARCHAR(30) NOT NULL DEFAULT 'gregorian',
    theme VARCHAR(50) NOT NULL DEFAULT '',
    timezone VARCHAR(100) NOT NULL DEFAULT '99',
    firstaccess BIGINT NOT NULL DEFAULT 0,
    lastaccess BIGINT NOT NULL DEFAULT 0,
    lastlogin BIGINT NOT NULL DEFAULT 0,
    currentlogin BIGINT NOT NULL DEFAULT 0,
    lastip VARCHAR(45) NOT NULL DEFAULT '',
    secret VARCHAR(15) NOT NULL DEFAULT '',
    picture BIGINT NOT NULL DEFAULT 0,
    description TEXT,
    descriptionformat SMALLINT NOT NULL DEFAULT 1,
    mailformat SMALLINT NOT NULL DEFAULT 1,
    maildigest SMALLINT NOT NULL DEFAULT 0,
    maildisplay SMALLINT NOT NULL DEFAULT 2,
    autosubscribe SMALLINT NOT NULL DEFAULT 1,
    trackforums SMALLINT NOT NULL DEFAULT 0,
    timecreated BIGINT NOT NULL DEFAULT 0,
    timemodified BIGINT NOT NULL DEFAULT 0,
    trustbitmask BIGINT NOT NULL DEFAULT 0,
    imagealt VARCHAR(255),
    lastnamephonetic VARCHAR(255),
    firstnamephonetic VARCHAR(255),
    middlename VARCHAR(255),
    alternatename VARCHAR(255),
    moodlenetprofile VARCHAR(255),
CONSTRAINT {prefix}user_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}user IS 'One record for each person';
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}user_mneuse_uix ON {prefix}user (mnethostid, username);
CREATE INDEX IF NOT EXISTS {prefix}user_del_ix ON {prefix}user (deleted);
CREATE INDEX IF NOT EXISTS {prefix}user_con_ix ON {prefix}user (confirmed);
CREATE INDEX IF NOT EXISTS {prefix}user_fir_ix ON {prefix}user (firstname);
CREATE INDEX IF NOT EXISTS {prefix}user_las_ix ON {prefix}user (lastname);
CREATE INDEX IF NOT EXISTS {prefix}user_cit_ix ON {prefix}user (city);
CREATE INDEX IF NOT EXISTS {prefix}user_cou_ix ON {prefix}user (country);
CREATE INDEX IF NOT EXISTS {prefix}user_las1_ix ON {prefix}user (lastaccess);
CREATE INDEX IF NOT EXISTS {prefix}user_ema_ix ON {prefix}user (email);
CREATE INDEX IF NOT EXISTS {prefix}user_aut_ix ON {prefix}user (auth);
CREATE INDEX IF NOT EXISTS {prefix}user_idn_ix ON {prefix}user (idnumber);
CREATE INDEX IF NOT EXISTS {prefix}user_fir1_ix ON {prefix}user (firstnamephonetic);
CREATE INDEX IF NOT EXISTS {prefix}user_las2_ix ON {prefix}user (lastnamephonetic);
CREATE INDEX IF NOT EXISTS {prefix}user_mid_ix ON {prefix}user (middlename);
CREATE INDEX IF NOT EXISTS {prefix}user_alt_ix ON {prefix}user (alternatename);

-- table course_categories
CREATE TABLE IF NOT EXISTS {prefix}course_categories (
    id BIGSERIAL,
    name VARCHAR(255) NOT NULL DEFAULT '',
    idnumber VARCHAR(100),
    description TEXT,
    descriptionformat SMALLINT NOT NULL DEFAULT 0,
    parent BIGINT NOT NULL DEFAULT 0,
    sortorder BIGINT NOT NULL DEFAULT 0,
    coursecount BIGINT NOT NULL DEFAULT 0,
    visible SMALLINT NOT NULL DEFAULT 1,
    visibleold SMALLINT NOT NULL DEFAULT 1,
    timemodified BIGINT NOT NULL DEFAULT 0,
    depth BIGINT NOT NULL DEFAULT 0,
    path VARCHAR(255) NOT NULL DEFAULT '',
    theme VARCHAR(50),
CONSTRAINT {prefix}courcate_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}course_categories IS 'Course categories';
CREATE INDEX IF NOT EXISTS {prefix}courcate_par_ix ON {prefix}course_categories (parent);

-- table course
CREATE TABLE IF NOT EXISTS {prefix}course (
    id BIGSERIAL,
    category BIGINT NOT NULL DEFAULT 0,
    sortorder BIGINT NOT NULL DEFAULT 0,
    fullname VARCHAR(1333) NOT NULL DEFAULT '',
    shortname VARCHAR(255) NOT NULL DEFAULT '',
    idnumber VARCHAR(100) NOT NULL DEFAULT '',
    summary TEXT,
    summaryformat SMALLINT NOT NULL DEFAULT 0,
    format VARCHAR(21) NOT NULL DEFAULT 'topics',
    showgrades SMALLINT NOT NULL DEFAULT 1,
    newsitems INTEGER NOT NULL DEFAULT 1,
    startdate BIGINT NOT NULL DEFAULT 0,
    enddate BIGINT NOT NULL DEFAULT 0,
    relativedatesmode SMALLINT NOT NULL DEFAULT 0,
    marker BIGINT NOT NULL DEFAULT 0,
    maxbytes BIGINT NOT NULL DEFAULT 0,
    legacyfiles SMALLINT NOT NULL DEFAULT 0,
    showreports SMALLINT NOT NULL DEFAULT 0,
    visible SMALLINT NOT NULL DEFAULT 1,
    visibleold SMALLINT NOT NULL DEFAULT 1,
    downloadcontent SMALLINT,
    groupmode SMALLINT NOT NULL DEFAULT 0,
    groupmodeforce SMALLINT NOT NULL DEFAULT 0,
    defaultgroupingid BIGINT NOT NULL DEFAULT 0,
    lang VARCHAR(30) NOT NULL DEFAULT '',
    calendartype VARCHAR(30) NOT NULL DEFAULT '',
    theme VARCHAR(50) NOT NULL DEFAULT '',
    timecreated BIGINT NOT NULL DEFAULT 0,
    timemodified BIGINT NOT NULL DEFAULT 0,
    requested SMALLINT NOT NULL DEFAULT 0,
    enablecompletion SMALLINT NOT NULL DEFAULT 0,
    completionnotify SMALLINT NOT NULL DEFAULT 0,
    cacherev BIGINT NOT NULL DEFAULT 0,
    originalcourseid BIGINT,
    showactivitydates SMALLINT NOT NULL DEFAULT 0,
    showcompletionconditions SMALLINT,
    pdfexportfont VARCHAR(50),
CONSTRAINT {prefix}cour_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}course IS 'Central course table';
CREATE INDEX IF NOT EXISTS {prefix}cour_cat_ix ON {prefix}course (category);
CREATE INDEX IF NOT EXISTS {prefix}cour_idn_ix ON {prefix}course (idnumber);
CREATE INDEX IF NOT EXISTS {prefix}cour_sho_ix ON {prefix}course (shortname);
CREATE INDEX IF NOT EXISTS {prefix}cour_sor_ix ON {prefix}course (sortorder);
CREATE INDEX IF NOT EXISTS {prefix}cour_ori_ix ON {prefix}course (originalcourseid);

-- table modules
CREATE TABLE IF NOT EXISTS {prefix}modules (
    id BIGSERIAL,
    name VARCHAR(20) NOT NULL DEFAULT '',
    cron BIGINT NOT NULL DEFAULT 0,
    lastcron BIGINT NOT NULL DEFAULT 0,
    search VARCHAR(255) NOT NULL DEFAULT '',
    visible SMALLINT NOT NULL DEFAULT 1,
CONSTRAINT {prefix}modu_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}modules IS 'modules available in the site';
CREATE INDEX IF NOT EXISTS {prefix}modu_nam_ix ON {prefix}modules (name);

-- table course_modules
CREATE TABLE IF NOT EXISTS {prefix}course_modules (
    id BIGSERIAL,
    course BIGINT NOT NULL DEFAULT 0,
    module BIGINT NOT NULL DEFAULT 0,
    instance BIGINT NOT NULL DEFAULT 0,
    section BIGINT NOT NULL DEFAULT 0,
    idnumber VARCHAR(100),
    added BIGINT NOT NULL DEFAULT 0,
    score SMALLINT NOT NULL DEFAULT 0,
    indent INTEGER NOT NULL DEFAULT 0,
    visible SMALLINT NOT NULL DEFAULT 1,
    visibleoncoursepage SMALLINT NOT NULL DEFAULT 1,
    visibleold SMALLINT NOT NULL DEFAULT 1,
    groupmode SMALLINT NOT NULL DEFAULT 0,
    groupingid BIGINT NOT NULL DEFAULT 0,
    completion SMALLINT NOT NULL DEFAULT 0,
    completiongradeitemnumber BIGINT,
    completionview SMALLINT NOT NULL DEFAULT 0,
    completionexpected BIGINT NOT NULL DEFAULT 0,
    completionpassgrade SMALLINT NOT NULL DEFAULT 0,
    showdescription SMALLINT NOT NULL DEFAULT 0,
    availability TEXT,
    deletioninprogress SMALLINT NOT NULL DEFAULT 0,
    downloadcontent SMALLINT DEFAULT 1,
    lang VARCHAR(30),
CONSTRAINT {prefix}courmodu_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}course_modules IS 'course_modules table retrofitted from MySQL';
CREATE INDEX IF NOT EXISTS {prefix}courmodu_vis_ix ON {prefix}course_modules (visible);
CREATE INDEX IF NOT EXISTS {prefix}courmodu_cou_ix ON {prefix}course_modules (course);
CREATE INDEX IF NOT EXISTS {prefix}courmodu_mod_ix ON {prefix}course_modules (module);
CREATE INDEX IF NOT EXISTS {prefix}courmodu_ins_ix ON {prefix}course_modules (instance);
CREATE INDEX IF NOT EXISTS {prefix}courmodu_idncou_ix ON {prefix}course_modules (idnumber, course);
CREATE INDEX IF NOT EXISTS {prefix}courmodu_gro_ix ON {prefix}course_modules (groupingid);

-- table context
CREATE TABLE IF NOT EXISTS {prefix}context (
    id BIGSERIAL,
    contextlevel BIGINT NOT NULL DEFAULT 0,
    instanceid BIGINT NOT NULL DEFAULT 0,
    path VARCHAR(255),
    depth SMALLINT NOT NULL DEFAULT 0,
    locked SMALLINT NOT NULL DEFAULT 0,
CONSTRAINT {prefix}cont_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}context IS 'one of these must be set';
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}cont_conins_uix ON {prefix}context (contextlevel, instanceid);
CREATE INDEX IF NOT EXISTS {prefix}cont_ins_ix ON {prefix}context (instanceid);
CREATE INDEX IF NOT EXISTS {prefix}cont_pat_ix ON {prefix}context (path);
CREATE INDEX IF NOT EXISTS {prefix}cont_pat_ix_pattern ON {prefix}context USING btree (path varchar_pattern_ops);

-- table role
CREATE TABLE IF NOT EXISTS {prefix}role (
    id BIGSERIAL,
    name VARCHAR(255) NOT NULL DEFAULT '',
    shortname VARCHAR(100) NOT NULL DEFAULT '',
    description TEXT NOT NULL,
    sortorder BIGINT NOT NULL DEFAULT 0,
    archetype VARCHAR(30) NOT NULL DEFAULT '',
CONSTRAINT {prefix}role_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}role IS 'moodle roles';
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}role_sor_uix ON {prefix}role (sortorder);
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}role_sho_uix ON {prefix}role (shortname);

-- table role_assignments
CREATE TABLE IF NOT EXISTS {prefix}role_assignments (
    id BIGSERIAL,
    roleid BIGINT NOT NULL DEFAULT 0,
    contextid BIGINT NOT NULL DEFAULT 0,
    userid BIGINT NOT NULL DEFAULT 0,
    timemodified BIGINT NOT NULL DEFAULT 0,
    modifierid BIGINT NOT NULL DEFAULT 0,
    component VARCHAR(100) NOT NULL DEFAULT '',
    itemid BIGINT NOT NULL DEFAULT 0,
    sortorder BIGINT NOT NULL DEFAULT 0,
CONSTRAINT {prefix}roleassi_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}role_assignments IS 'assigning roles in different context';
CREATE INDEX IF NOT EXISTS {prefix}roleassi_sor_ix ON {prefix}role_assignments (sortorder);
CREATE INDEX IF NOT EXISTS {prefix}roleassi_rolcon_ix ON {prefix}role_assignments (roleid, contextid);
CREATE INDEX IF NOT EXISTS {prefix}roleassi_useconrol_ix ON {prefix}role_assignments (userid, contextid, roleid);
CREATE INDEX IF NOT EXISTS {prefix}roleassi_comiteuse_ix ON {prefix}role_assignments (component, itemid, userid);
CREATE INDEX IF NOT EXISTS {prefix}roleassi_rol_ix ON {prefix}role_assignments (roleid);
CREATE INDEX IF NOT EXISTS {prefix}roleassi_con_ix ON {prefix}role_assignments (contextid);
CREATE INDEX IF NOT EXISTS {prefix}roleassi_use_ix ON {prefix}role_assignments (userid);

-- table enrol
CREATE TABLE IF NOT EXISTS {prefix}enrol (
    id BIGSERIAL,
    enrol VARCHAR(20) NOT NULL DEFAULT '',
    status BIGINT NOT NULL DEFAULT 0,
    courseid BIGINT NOT NULL,
    sortorder BIGINT NOT NULL DEFAULT 0,
    name VARCHAR(255),
    enrolperiod BIGINT DEFAULT 0,
    enrolstartdate BIGINT DEFAULT 0,
    enrolenddate BIGINT DEFAULT 0,
    expirynotify SMALLINT DEFAULT 0,
    expirythreshold BIGINT DEFAULT 0,
    notifyall SMALLINT DEFAULT 0,
    password VARCHAR(50),
    cost VARCHAR(20),
    currency VARCHAR(3),
    roleid BIGINT DEFAULT 0,
    customint1 BIGINT,
    customint2 BIGINT,
    customint3 BIGINT,
    customint4 BIGINT,
    customint5 BIGINT,
    customint6 BIGINT,
    customint7 BIGINT,
    customint8 BIGINT,
    customchar1 VARCHAR(255),
    customchar2 VARCHAR(255),
    customchar3 VARCHAR(1333),
    customdec1 NUMERIC(12,7),
    customdec2 NUMERIC(12,7),
    customtext1 TEXT,
    customtext2 TEXT,
    customtext3 TEXT,
    customtext4 TEXT,
    timecreated BIGINT NOT NULL DEFAULT 0,
    timemodified BIGINT NOT NULL DEFAULT 0,
CONSTRAINT {prefix}enro_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}enrol IS 'Instances of enrolment plugins used in courses, fields marked as custom have a plugin defined meaning, core does not touch them. Create a new linked table if you need even more custom fields.';
CREATE INDEX IF NOT EXISTS {prefix}enro_enr_ix ON {prefix}enrol (enrol);
CREATE INDEX IF NOT EXISTS {prefix}enro_cou_ix ON {prefix}enrol (courseid);
CREATE INDEX IF NOT EXISTS {prefix}enro_rol_ix ON {prefix}enrol (roleid);

-- table user_enrolments
CREATE TABLE IF NOT EXISTS {prefix}user_enrolments (
    id BIGSERIAL,
    status BIGINT NOT NULL DEFAULT 0,
    enrolid BIGINT NOT NULL,
    userid BIGINT NOT NULL,
    timestart BIGINT NOT NULL DEFAULT 0,
    timeend BIGINT NOT NULL DEFAULT 2147483647,
    modifierid BIGINT NOT NULL DEFAULT 0,
    timecreated BIGINT NOT NULL DEFAULT 0,
    timemodified BIGINT NOT NULL DEFAULT 0,
CONSTRAINT {prefix}userenro_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}user_enrolments IS 'Users participating in courses (aka enrolled users) - everybody who is participating/visible in course, that means both teachers and students';
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}userenro_enruse_uix ON {prefix}user_enrolments (enrolid, userid);
CREATE INDEX IF NOT EXISTS {prefix}userenro_enr_ix ON {prefix}user_enrolments (enrolid);
CREATE INDEX IF NOT EXISTS {prefix}userenro_use_ix ON {prefix}user_enrolments (userid);
CREATE INDEX IF NOT EXISTS {prefix}userenro_mod_ix ON {prefix}user_enrolments (modifierid);

-- table cohort
CREATE TABLE IF NOT EXISTS {prefix}cohort (
    id BIGSERIAL,
    contextid BIGINT NOT NULL,
    name VARCHAR(254) NOT NULL DEFAULT '',
    idnumber VARCHAR(100),
    description TEXT,
    descriptionformat SMALLINT NOT NULL,
    visible SMALLINT NOT NULL DEFAULT 1,
    component VARCHAR(100) NOT NULL DEFAULT '',
    timecreated BIGINT NOT NULL,
    timemodified BIGINT NOT NULL,
    theme VARCHAR(50),
CONSTRAINT {prefix}coho_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}cohort IS 'Each record represents one cohort (aka site-wide group).';
CREATE INDEX IF NOT EXISTS {prefix}coho_con_ix ON {prefix}cohort (contextid);

-- table cohort_members
CREATE TABLE IF NOT EXISTS {prefix}cohort_members (
    id BIGSERIAL,
    cohortid BIGINT NOT NULL DEFAULT 0,
    userid BIGINT NOT NULL DEFAULT 0,
    timeadded BIGINT NOT NULL DEFAULT 0,
CONSTRAINT {prefix}cohomemb_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}cohort_members IS 'Link a user to a cohort.';
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}cohomemb_cohuse_uix ON {prefix}cohort_members (cohortid, userid);
CREATE INDEX IF NOT EXISTS {prefix}cohomemb_coh_ix ON {prefix}cohort_members (cohortid);
CREATE INDEX IF NOT EXISTS {prefix}cohomemb_use_ix ON {prefix}cohort_members (userid);

-- table groups
CREATE TABLE IF NOT EXISTS {prefix}groups (
    id BIGSERIAL,
    courseid BIGINT NOT NULL,
    idnumber VARCHAR(100) NOT NULL DEFAULT '',
    name VARCHAR(254) NOT NULL DEFAULT '',
    description TEXT,
    descriptionformat SMALLINT NOT NULL DEFAULT 0,
    enrolmentkey VARCHAR(50),
    picture BIGINT NOT NULL DEFAULT 0,
    visibility SMALLINT NOT NULL DEFAULT 0,
    participation SMALLINT NOT NULL DEFAULT 1,
    timecreated BIGINT NOT NULL DEFAULT 0,
    timemodified BIGINT NOT NULL DEFAULT 0,
CONSTRAINT {prefix}grou_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}groups IS 'Each record represents a group.';
CREATE INDEX IF NOT EXISTS {prefix}grou_idn_ix ON {prefix}groups (idnumber);
CREATE INDEX IF NOT EXISTS {prefix}grou_cou_ix ON {prefix}groups (courseid);

-- table groups_members
CREATE TABLE IF NOT EXISTS {prefix}groups_members (
    id BIGSERIAL,
    groupid BIGINT NOT NULL DEFAULT 0,
    userid BIGINT NOT NULL DEFAULT 0,
    timeadded BIGINT NOT NULL DEFAULT 0,
    component VARCHAR(100) NOT NULL DEFAULT '',
    itemid BIGINT NOT NULL DEFAULT 0,
CONSTRAINT {prefix}groumemb_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}groups_members IS 'Link a user to a group.';
CREATE INDEX IF NOT EXISTS {prefix}groumemb_gro_ix ON {prefix}groups_members (groupid);
CREATE INDEX IF NOT EXISTS {prefix}groumemb_use_ix ON {prefix}groups_members (userid);
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}groumemb_usegro_uix ON {prefix}groups_members (userid, groupid);

-- table task_adhoc
CREATE TABLE IF NOT EXISTS {prefix}task_adhoc (
    id BIGSERIAL,
    component VARCHAR(255) NOT NULL DEFAULT '',
    classname VARCHAR(255) NOT NULL DEFAULT '',
    nextruntime BIGINT NOT NULL,
    faildelay BIGINT,
    customdata TEXT,
    userid BIGINT,
    timecreated BIGINT NOT NULL DEFAULT 0,
    timestarted BIGINT,
    hostname VARCHAR(255),
    pid BIGINT,
    attemptsavailable SMALLINT,
    firststartingtime BIGINT,
CONSTRAINT {prefix}taskadho_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}task_adhoc IS 'List of adhoc tasks waiting to run.';
CREATE INDEX IF NOT EXISTS {prefix}taskadho_nex_ix ON {prefix}task_adhoc (nextruntime);
CREATE INDEX IF NOT EXISTS {prefix}taskadho_tim_ix ON {prefix}task_adhoc (timestarted);
CREATE INDEX IF NOT EXISTS {prefix}taskadho_use_ix ON {prefix}task_adhoc (userid);

-- table rocketchat
CREATE TABLE IF NOT EXISTS {prefix}rocketchat (
    id BIGSERIAL,
    course BIGINT NOT NULL,
    name VARCHAR(255) NOT NULL DEFAULT '',
    timecreated BIGINT NOT NULL DEFAULT 0,
    timemodified BIGINT NOT NULL DEFAULT 0,
    intro TEXT,
    introformat SMALLINT NOT NULL DEFAULT 0,
    rocketchatid VARCHAR(24) NOT NULL DEFAULT '',
    displaytype BIGINT NOT NULL DEFAULT 1,
    popupheight BIGINT,
    popupwidth BIGINT,
    embbeded SMALLINT NOT NULL DEFAULT 0,
    moderatorroles VARCHAR(255),
    userroles VARCHAR(255),
    retentionenabled SMALLINT NOT NULL DEFAULT 0,
    maxage BIGINT NOT NULL DEFAULT 90,
    filesonly SMALLINT NOT NULL DEFAULT 0,
    excludepinned SMALLINT NOT NULL DEFAULT 0,
CONSTRAINT {prefix}rock_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}rocketchat IS 'Stores the rocketchat activity module instances. This table is the default table required for modules.
     Will contains all the instance parameters necessary to pass to rocketchat';
CREATE INDEX IF NOT EXISTS {prefix}rock_cou_ix ON {prefix}rocketchat (course);

-- table rocketchatxrecyclebin
CREATE TABLE IF NOT EXISTS {prefix}rocketchatxrecyclebin (
    id BIGSERIAL,
    binid BIGINT NOT NULL,
    cmid BIGINT NOT NULL,
    rocketchatid VARCHAR(24) NOT NULL DEFAULT '',
CONSTRAINT {prefix}rock_id1_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}rocketchatxrecyclebin IS 'joining table use to delete remote Rocket.Chat private groups';
CREATE UNIQUE INDEX IF NOT EXISTS {prefix}rock_roc_uix ON {prefix}rocketchatxrecyclebin (rocketchatid);

-- table tool_recyclebin_course
CREATE TABLE IF NOT EXISTS {prefix}tool_recyclebin_course (
    id BIGSERIAL,
    courseid BIGINT NOT NULL,
    section BIGINT NOT NULL,
    module BIGINT NOT NULL,
    name VARCHAR(255),
    timecreated BIGINT NOT NULL DEFAULT 0,
CONSTRAINT {prefix}toolrecycour_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}tool_recyclebin_course IS 'A list of items in the course recycle bin';
CREATE INDEX IF NOT EXISTS {prefix}toolrecycour_tim_ix ON {prefix}tool_recyclebin_course (timecreated);
CREATE INDEX IF NOT EXISTS {prefix}toolrecycour_cou_ix ON {prefix}tool_recyclebin_course (courseid);

-- table tool_recyclebin_category
CREATE TABLE IF NOT EXISTS {prefix}tool_recyclebin_category (
    id BIGSERIAL,
    categoryid BIGINT NOT NULL,
    shortname VARCHAR(255) NOT NULL DEFAULT '',
    fullname VARCHAR(1333) NOT NULL DEFAULT '',
    timecreated BIGINT NOT NULL,
CONSTRAINT {prefix}toolrecycate_id_pk PRIMARY KEY (id)
);
COMMENT ON TABLE {prefix}tool_recyclebin_category IS 'A list of items in the category recycle bin';
CREATE INDEX IF NOT EXISTS {prefix}toolrecycate_tim_ix ON {prefix}tool_recyclebin_category (timecreated);
CREATE INDEX IF NOT EXISTS {prefix}toolrecycate_cat_ix ON {prefix}tool_recyclebin_category (categoryid);

