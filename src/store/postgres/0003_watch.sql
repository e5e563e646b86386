-- statusd schema, version 3: the change feed Watch reads. Never edit a
-- shipped migration: add the next one.
--
-- Every status write and parent delete inserts its event here, in its own
-- transaction, with a revision from `statusd_revisions`. Revisions are
-- allocated in call order but may commit out of order; a replica publishes
-- them to its watchers only once they are settled: every writer takes the
-- `statusd_watch` row FOR SHARE before it draws a revision, and a replica's
-- poller takes the row FOR UPDATE, which waits for every writer that may
-- hold an earlier revision (see `postgres::events`). `compacted` is the last
-- revision no longer kept (the history keeps the last --watch-history).

CREATE SEQUENCE statusd_revisions;

CREATE TABLE statusd_events (
    revision bigint PRIMARY KEY,
    parent_id text COLLATE "C" NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX statusd_events_by_parent ON statusd_events (parent_id, revision);

CREATE TABLE statusd_watch (
    id smallint PRIMARY KEY,
    compacted bigint NOT NULL
);
INSERT INTO statusd_watch (id, compacted) VALUES (0, 0);
