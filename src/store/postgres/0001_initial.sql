-- statusd schema, version 1. Never edit a shipped migration: add the next one.
--
-- One table per collection. Ids are compared byte-wise (COLLATE "C"), so
-- lists come back in the same order as on sled. A status's key is its parent
-- id and its own id; that primary key is also the index every list page is
-- read from (keyset: parent_id = $1 AND id > $2 ORDER BY id LIMIT $3).
-- Records are statusd's own codec (a format byte, then bincode).

CREATE TABLE device_compliance_policies (
    id text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);
CREATE TABLE mobile_app_configurations (
    id text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);
CREATE TABLE device_configurations (
    id text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);

CREATE TABLE device_compliance_policy_user_statuses (
    parent_id text COLLATE "C" NOT NULL REFERENCES device_compliance_policies (id) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (parent_id, id)
);
CREATE TABLE device_compliance_policy_device_statuses (
    parent_id text COLLATE "C" NOT NULL REFERENCES device_compliance_policies (id) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (parent_id, id)
);
CREATE TABLE mobile_app_configuration_user_statuses (
    parent_id text COLLATE "C" NOT NULL REFERENCES mobile_app_configurations (id) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (parent_id, id)
);
CREATE TABLE mobile_app_configuration_device_statuses (
    parent_id text COLLATE "C" NOT NULL REFERENCES mobile_app_configurations (id) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (parent_id, id)
);
CREATE TABLE device_configuration_user_statuses (
    parent_id text COLLATE "C" NOT NULL REFERENCES device_configurations (id) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (parent_id, id)
);
CREATE TABLE device_configuration_device_statuses (
    parent_id text COLLATE "C" NOT NULL REFERENCES device_configurations (id) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (parent_id, id)
);
