-- statusd schema, version 2: status tallies. Never edit a shipped migration:
-- add the next one.
--
-- One tally table per status collection: per parent, how many of its
-- statuses hold each complianceStatus value (one column per value, in
-- ComplianceStatus::ALL order) and when the latest of them was written
-- (`last_update`, DateTime ticks: 100 ns since 0001-01-01T00:00:00Z; 0 is
-- DateTime::MIN). Every status write changes one of its parent's rows in the
-- same transaction, so a tally read sums at most 16 rows, never a count.
-- A parent has up to 16 rows (`shard` 0-15, chosen per transaction): with one
-- row, every write under a parent would hold that row's lock through its
-- commit, so writes under one parent (the common load: many devices, few
-- policies) would commit one at a time. A parent without rows has an empty
-- tally; its delete removes them (ON DELETE CASCADE), so a parent created
-- again starts empty.
--
-- The statuses stored before this migration are counted by statusd itself
-- in the same transaction as these tables (records are statusd's codec, which
-- SQL cannot read): see `backfill` in tally.rs.

CREATE TABLE device_compliance_policy_user_status_tallies (
    parent_id text COLLATE "C" NOT NULL REFERENCES device_compliance_policies (id) ON DELETE CASCADE,
    shard smallint NOT NULL,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, shard)
);

CREATE TABLE device_compliance_policy_device_status_tallies (
    parent_id text COLLATE "C" NOT NULL REFERENCES device_compliance_policies (id) ON DELETE CASCADE,
    shard smallint NOT NULL,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, shard)
);

CREATE TABLE mobile_app_configuration_user_status_tallies (
    parent_id text COLLATE "C" NOT NULL REFERENCES mobile_app_configurations (id) ON DELETE CASCADE,
    shard smallint NOT NULL,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, shard)
);

CREATE TABLE mobile_app_configuration_device_status_tallies (
    parent_id text COLLATE "C" NOT NULL REFERENCES mobile_app_configurations (id) ON DELETE CASCADE,
    shard smallint NOT NULL,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, shard)
);

CREATE TABLE device_configuration_user_status_tallies (
    parent_id text COLLATE "C" NOT NULL REFERENCES device_configurations (id) ON DELETE CASCADE,
    shard smallint NOT NULL,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, shard)
);

CREATE TABLE device_configuration_device_status_tallies (
    parent_id text COLLATE "C" NOT NULL REFERENCES device_configurations (id) ON DELETE CASCADE,
    shard smallint NOT NULL,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, shard)
);
