-- rcjobs_sync: the worker's own state. Moodle tables are never written.

CREATE SCHEMA IF NOT EXISTS rcjobs_sync;

-- Which chat room belongs to which course module.
CREATE TABLE rcjobs_sync.room (
    cmid              bigint PRIMARY KEY,
    courseid          bigint,
    room_id           text,                 -- NULL while a creation is in flight
    room_name         text,
    created_by_worker boolean NOT NULL DEFAULT false,
    state             text NOT NULL DEFAULT 'active'
                      CHECK (state IN ('creating', 'active', 'trashed', 'purged', 'gone')),
    binid             bigint,
    last_sync_at      timestamptz,
    last_result       text,                 -- 'converged' | 'partial' | an outcome code
    member_count      integer,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- One live mapping per chat room.
CREATE UNIQUE INDEX room_room_id_live ON rcjobs_sync.room (room_id)
    WHERE room_id IS NOT NULL AND state IN ('creating', 'active', 'trashed');

-- Converged membership: who the last sync of each room left in it. Lets "unenrol this user
-- everywhere" find rooms Moodle no longer lists for the user (deleted users lose their
-- username and enrolments; suspended users vanish from desired membership).
CREATE TABLE rcjobs_sync.member (
    cmid      bigint NOT NULL,
    username  text   NOT NULL,             -- chat username (lower case)
    userid    bigint,                      -- Moodle user id, when Moodle wanted this member
    moderator boolean NOT NULL DEFAULT false,
    PRIMARY KEY (cmid, username)
);
CREATE INDEX member_userid ON rcjobs_sync.member (userid) WHERE userid IS NOT NULL;

-- Current problems per room and per user (replaced by every sync of the room), queryable:
--   SELECT * FROM rcjobs_sync.outcome WHERE code = 'user_missing';
CREATE TABLE rcjobs_sync.outcome (
    cmid     bigint NOT NULL,
    subject  text   NOT NULL DEFAULT '',   -- '' = the room itself, else a chat username
    userid   bigint,
    code     text   NOT NULL,              -- user_missing | invalid_username | room_not_found | forbidden | ...
    detail   text   NOT NULL DEFAULT '',
    job_id   bigint,
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cmid, subject)
);
CREATE INDEX outcome_code ON rcjobs_sync.outcome (code);

-- Shared Rocket.Chat rate limiter: one fixed window per route, plus a pause honoured by
-- every replica after a 429.
CREATE TABLE rcjobs_sync.rate_window (
    route        text PRIMARY KEY,
    window_start timestamptz NOT NULL DEFAULT now(),
    used         integer NOT NULL DEFAULT 0,
    paused_until timestamptz
);
