-- Room identity per chat backend: which backend each mapped room lives on. A room id means
-- something only on its own server (a Rocket.Chat group id and a Matrix room id can never
-- be compared), so every lookup by room id is per backend, and a worker on one backend
-- never takes another backend's mapping for its own. Rows from before are Rocket.Chat's.
ALTER TABLE rcjobs_sync.room
    ADD COLUMN IF NOT EXISTS backend text NOT NULL DEFAULT 'rocketchat';
-- One live mapping per room id and backend (was: per room id).
DROP INDEX IF EXISTS rcjobs_sync.room_room_id_live;
CREATE UNIQUE INDEX room_room_id_live ON rcjobs_sync.room (backend, room_id)
    WHERE room_id IS NOT NULL AND state IN ('creating', 'active', 'trashed');
