-- statusd schema, version 2: status tallies. Never edit a shipped migration:
-- add the next one.
--
-- One tally table per status collection: per parent, how many of its
-- statuses hold each complianceStatus value (one column per value, in
-- ComplianceStatus::ALL order) and when the latest of them was written
-- (`last_update`, DateTime ticks: 100 ns since 0001-01-01T00:00:00Z; 0 is
-- DateTime::MIN). Every status write changes its parent's row in the same
-- transaction, so a tally read is one row, never a count. A parent without a
-- row has an empty tally; its delete removes the row (ON DELETE CASCADE), so
-- a parent created again starts empty.
--
-- The statuses stored before this migration are counted by statusd itself
-- in the same transaction as these tables (records are statusd's codec, which
-- SQL cannot read): see `backfill` in tally.rs.

CREATE TABLE device_compliance_policy_user_status_tallies (
    parent_id text COLLATE "C" PRIMARY KEY REFERENCES device_compliance_policies (id) ON DELETE CASCADE,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0
);

CREATE TABLE device_compliance_policy_device_status_tallies (
    parent_id text COLLATE "C" PRIMARY KEY REFERENCES device_compliance_policies (id) ON DELETE CASCADE,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0
);

CREATE TABLE mobile_app_configuration_user_status_tallies (
    parent_id text COLLATE "C" PRIMARY KEY REFERENCES mobile_app_configurations (id) ON DELETE CASCADE,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0
);

CREATE TABLE mobile_app_configuration_device_status_tallies (
    parent_id text COLLATE "C" PRIMARY KEY REFERENCES mobile_app_configurations (id) ON DELETE CASCADE,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0
);

CREATE TABLE device_configuration_user_status_tallies (
    parent_id text COLLATE "C" PRIMARY KEY REFERENCES device_configurations (id) ON DELETE CASCADE,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0
);

CREATE TABLE device_configuration_device_status_tallies (
    parent_id text COLLATE "C" PRIMARY KEY REFERENCES device_configurations (id) ON DELETE CASCADE,
    unknown bigint NOT NULL DEFAULT 0,
    not_applicable bigint NOT NULL DEFAULT 0,
    compliant bigint NOT NULL DEFAULT 0,
    remediated bigint NOT NULL DEFAULT 0,
    non_compliant bigint NOT NULL DEFAULT 0,
    error bigint NOT NULL DEFAULT 0,
    conflict bigint NOT NULL DEFAULT 0,
    not_assigned bigint NOT NULL DEFAULT 0,
    last_update bigint NOT NULL DEFAULT 0
);
