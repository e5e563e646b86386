//! Crash safety under load: the real binary, many writers over gRPC and REST
//! (creates, updates, deletes, parent deletes with cascades), SIGKILL at a
//! random moment, restart on the same directory, then check the store against
//! a model of every acknowledged operation:
//! - every acknowledged create/update/delete is reflected;
//! - nothing unacknowledged appears, except the one operation each writer had
//!   in flight at the kill (which may or may not have happened);
//! - no orphan statuses, no pending cascades, and the store opens cleanly.
//!
//! `STATUSD_CRASH_CYCLES` sets the number of kill cycles (default 5; CI runs
//! 20, a long run hundreds).

mod common;

use common::{try_http, ChildServer, UserMsg, PARENTS};
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::transport::Channel;

const REST_COLLECTIONS: [&str; 3] = [
    "deviceManagement/deviceCompliancePolicies",
    "deviceAppManagement/mobileAppConfigurations",
    "deviceManagement/deviceConfigurations",
];
const ODATA_TYPES: [&str; 3] = [
    "#microsoft.graph.windows10CompliancePolicy",
    "#microsoft.graph.iosMobileAppConfiguration",
    "#microsoft.graph.windows10GeneralConfiguration",
];

/// What one writer believes is stored: its current parent and that parent's
/// statuses (id → devicesCount), plus parents it deleted.
#[derive(Debug, Clone, Default)]
struct Model {
    parent: Option<String>,
    generation: u32,
    statuses: BTreeMap<String, i32>,
    deleted_parents: Vec<String>,
    next_id: u64,
}

/// The operation a writer had sent but not seen acknowledged.
#[derive(Debug, Clone)]
enum InFlight {
    CreateParent(String),
    DeleteParent(String),
    Put(String, i32),
    Delete(String),
}

struct Writer {
    index: usize,
    rest: bool,
    model: Model,
    in_flight: Option<InFlight>,
}

impl Writer {
    fn kind(&self) -> usize {
        self.index % 3
    }

    async fn create_parent(&self, ch: &Channel, base: &str, id: &str) -> bool {
        if self.rest {
            let body = serde_json::json!({"@odata.type": ODATA_TYPES[self.kind()], "id": id, "displayName": id});
            let url = format!("{base}/v1.0/{}", REST_COLLECTIONS[self.kind()]);
            try_http("POST", &url, Some(&body.to_string()))
                .await
                .is_ok_and(|r| r.status == 201)
        } else {
            let api = PARENTS[self.kind()];
            api.create(ch, api.new_parent(id, id)).await.is_ok()
        }
    }

    async fn delete_parent(&self, ch: &Channel, base: &str, id: &str) -> bool {
        if self.rest {
            let url = format!("{base}/v1.0/{}/{id}", REST_COLLECTIONS[self.kind()]);
            try_http("DELETE", &url, None).await.is_ok_and(|r| r.status == 204)
        } else {
            PARENTS[self.kind()].delete(ch, id).await.is_ok()
        }
    }

    async fn create_status(&self, ch: &Channel, base: &str, parent: &str, id: &str, n: i32) -> bool {
        if self.rest {
            let url = format!("{base}/beta/{}/{parent}/userStatuses", REST_COLLECTIONS[self.kind()]);
            let body = serde_json::json!({"id": id, "devicesCount": n, "status": "compliant"});
            try_http("POST", &url, Some(&body.to_string()))
                .await
                .is_ok_and(|r| r.status == 201)
        } else {
            let msg = UserMsg {
                id: id.into(),
                devices_count: n,
                ..Default::default()
            };
            PARENTS[self.kind()]
                .create_status(ch, "User", parent, msg)
                .await
                .is_ok()
        }
    }

    async fn update_status(&self, ch: &Channel, base: &str, parent: &str, id: &str, n: i32) -> bool {
        if self.rest {
            let url = format!(
                "{base}/v1.0/{}/{parent}/userStatuses/{id}",
                REST_COLLECTIONS[self.kind()]
            );
            try_http("PATCH", &url, Some(&format!(r#"{{"devicesCount":{n}}}"#)))
                .await
                .is_ok_and(|r| r.status == 200)
        } else {
            let msg = UserMsg {
                id: id.into(),
                devices_count: n,
                ..Default::default()
            };
            PARENTS[self.kind()]
                .update_status(ch, "User", parent, msg, Some(&["devices_count"]))
                .await
                .is_ok()
        }
    }

    async fn delete_status(&self, ch: &Channel, base: &str, parent: &str, id: &str) -> bool {
        if self.rest {
            let url = format!(
                "{base}/v1.0/{}/{parent}/userStatuses/{id}",
                REST_COLLECTIONS[self.kind()]
            );
            try_http("DELETE", &url, None).await.is_ok_and(|r| r.status == 204)
        } else {
            PARENTS[self.kind()].delete_status(ch, "User", parent, id).await.is_ok()
        }
    }

    /// Runs random operations until one fails (the server was killed).
    async fn run(mut self, ch: Channel, base: String) -> Writer {
        loop {
            let Some(parent) = self.model.parent.clone() else {
                self.model.generation += 1;
                let id = format!("w{}-g{}", self.index, self.model.generation);
                self.in_flight = Some(InFlight::CreateParent(id.clone()));
                if !self.create_parent(&ch, &base, &id).await {
                    return self;
                }
                self.model.parent = Some(id);
                self.in_flight = None;
                continue;
            };
            let roll = rand::random::<u32>() % 100;
            let existing: Vec<String> = self.model.statuses.keys().cloned().collect();
            if roll < 3 {
                self.in_flight = Some(InFlight::DeleteParent(parent.clone()));
                if !self.delete_parent(&ch, &base, &parent).await {
                    return self;
                }
                self.model.deleted_parents.push(parent);
                self.model.parent = None;
                self.model.statuses.clear();
            } else if roll < 60 || existing.is_empty() {
                self.model.next_id += 1;
                let id = format!("s{:06}", self.model.next_id);
                let n = rand::random::<i32>().abs();
                self.in_flight = Some(InFlight::Put(id.clone(), n));
                if !self.create_status(&ch, &base, &parent, &id, n).await {
                    return self;
                }
                self.model.statuses.insert(id, n);
            } else if roll < 85 {
                let id = existing[rand::random::<u32>() as usize % existing.len()].clone();
                let n = rand::random::<i32>().abs();
                self.in_flight = Some(InFlight::Put(id.clone(), n));
                if !self.update_status(&ch, &base, &parent, &id, n).await {
                    return self;
                }
                self.model.statuses.insert(id, n);
            } else {
                let id = existing[rand::random::<u32>() as usize % existing.len()].clone();
                self.in_flight = Some(InFlight::Delete(id.clone()));
                if !self.delete_status(&ch, &base, &parent, &id).await {
                    return self;
                }
                self.model.statuses.remove(&id);
            }
            self.in_flight = None;
        }
    }

    /// Compares the restarted server with the model, resolving the in-flight
    /// operation by what is actually stored; returns the violations.
    // Match guards that await would read worse than these nested ifs.
    #[allow(clippy::collapsible_match)]
    async fn check(&mut self, ch: &Channel) -> Vec<String> {
        let api = PARENTS[self.kind()];
        let mut violations = Vec::new();
        match self.in_flight.take() {
            Some(InFlight::CreateParent(id)) => {
                if api.get(ch, &id).await.is_ok() {
                    self.model.parent = Some(id);
                    self.model.statuses.clear();
                }
            }
            Some(InFlight::DeleteParent(id)) => {
                if api.get(ch, &id).await.is_err() {
                    self.model.deleted_parents.push(id);
                    self.model.parent = None;
                    self.model.statuses.clear();
                }
            }
            Some(InFlight::Put(id, n)) => {
                if let Some(p) = &self.model.parent {
                    let stored = api
                        .get_status::<UserMsg>(ch, "User", p, &id)
                        .await
                        .ok()
                        .map(|s| s.devices_count);
                    if stored == Some(n) {
                        self.model.statuses.insert(id, n);
                    }
                }
            }
            Some(InFlight::Delete(id)) => {
                if let Some(p) = &self.model.parent {
                    if api.get_status::<UserMsg>(ch, "User", p, &id).await.is_err() {
                        self.model.statuses.remove(&id);
                    }
                }
            }
            None => {}
        }
        for gone in &self.model.deleted_parents {
            if api.get(ch, gone).await.is_ok() {
                violations.push(format!(
                    "writer {}: acknowledged parent delete of {gone} undone",
                    self.index
                ));
            }
        }
        let Some(parent) = &self.model.parent else {
            return violations;
        };
        if api.get(ch, parent).await.is_err() {
            violations.push(format!("writer {}: acknowledged parent {parent} lost", self.index));
            return violations;
        }
        let mut stored = BTreeMap::new();
        let mut token = String::new();
        loop {
            let (items, next) = api
                .list_statuses::<UserMsg>(ch, "User", parent, 1000, &token)
                .await
                .unwrap();
            stored.extend(items.into_iter().map(|s| (s.id, s.devices_count)));
            if next.is_empty() {
                break;
            }
            token = next;
        }
        if stored != self.model.statuses {
            violations.push(format!(
                "writer {}: stored {} statuses, model {}; first difference: {:?}",
                self.index,
                stored.len(),
                self.model.statuses.len(),
                stored.iter().zip(self.model.statuses.iter()).find(|(a, b)| a != b)
            ));
        }
        violations
    }
}

fn cycles() -> usize {
    std::env::var("STATUSD_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Runs `cycles` SIGKILL cycles of 12 writers against servers made by
/// `spawn` (on the same storage each time), then checks every writer's model
/// against a last server. Returns the violations found and about how many
/// operations were acknowledged.
async fn crash_cycles(cycles: usize, spawn: impl Fn() -> ChildServer) -> (Vec<String>, usize) {
    let mut writers: Vec<Writer> = (0..12)
        .map(|i| Writer {
            index: i,
            rest: i % 2 == 1,
            model: Model::default(),
            in_flight: None,
        })
        .collect();
    let mut violations = Vec::new();
    let mut acknowledged_ops = 0usize;
    for cycle in 0..cycles {
        let mut server = spawn();
        let (ch, base) = (server.connect().await, server.base.clone());
        for w in &mut writers {
            violations.extend(w.check(&ch).await);
        }
        assert!(violations.is_empty(), "cycle {cycle}: {violations:#?}");
        let before: usize = writers.iter().map(|w| w.model.next_id as usize).sum();
        let tasks: Vec<_> = writers
            .drain(..)
            .map(|w| tokio::spawn(w.run(ch.clone(), base.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(200 + rand::random::<u64>() % 600)).await;
        server.kill();
        for t in tasks {
            writers.push(t.await.unwrap());
        }
        let after: usize = writers.iter().map(|w| w.model.next_id as usize).sum();
        acknowledged_ops += after - before;
    }
    // The last restart: check every model.
    let mut server = spawn();
    let ch = server.connect().await;
    for w in &mut writers {
        violations.extend(w.check(&ch).await);
    }
    server.kill();
    (violations, acknowledged_ops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_mixed_load_loses_no_acknowledged_operation() {
    let cycles = cycles();
    let dir = tempfile::tempdir().unwrap();
    let (violations, acknowledged_ops) = crash_cycles(cycles, || ChildServer::spawn(dir.path())).await;
    // Then look inside the store itself.
    let store = statusd::store::SledStore::open(&statusd::store::SledConfig {
        path: dir.path().to_owned(),
        cache_capacity: 64 << 20,
        durability: statusd::store::Durability::Durable,
        min_free_bytes: 0,
        watch_history: 1_000_000,
        faults: Default::default(),
    })
    .expect("the store opens cleanly after the crashes");
    store.wait_for_cascades();
    let report = store.check_integrity().expect("every record decodes");
    eprintln!(
        "crash harness (sled): {cycles} SIGKILL cycles, ~{acknowledged_ops} acknowledged creates among the operations, \
         {} parents, {} statuses, {} orphans, {} violations",
        report.parents,
        report.statuses,
        report.orphans,
        violations.len()
    );
    assert_eq!(report.orphans, 0, "orphan statuses");
    assert_eq!(
        report.tally_mismatches, 0,
        "overview tallies that disagree with the statuses"
    );
    assert_eq!(report.pending_cascades, 0);
    assert!(violations.is_empty(), "{violations:#?}");
}

/// The same harness with statusd on PostgreSQL (`STATUSD_TEST_DATABASE_URL`,
/// a fresh schema): SIGKILL of statusd loses nothing a client saw
/// acknowledged, and the database holds no orphan. At most 10 cycles
/// (`STATUSD_CRASH_CYCLES` below that); skipped without a database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_postgres_loses_no_acknowledged_operation() {
    let base = match common::pg::database_url() {
        Ok(url) => url,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let url = common::pg::fresh_schema(&base, "crash").await;
    let cycles = cycles().min(10);
    let dir = tempfile::tempdir().unwrap();
    let (violations, acknowledged_ops) = crash_cycles(cycles, || {
        ChildServer::spawn_with(dir.path(), &["--database-url", &url])
    })
    .await;
    let mut orphans = 0;
    let mut statuses = 0;
    for (parents, prefix) in [
        ("device_compliance_policies", "device_compliance_policy"),
        ("mobile_app_configurations", "mobile_app_configuration"),
        ("device_configurations", "device_configuration"),
    ] {
        for shape in ["user", "device"] {
            let table = format!("{prefix}_{shape}_statuses");
            let count = |sql: String| {
                let url = url.clone();
                async move { common::pg::query_strings(&url, &sql).await[0].parse::<i64>().unwrap() }
            };
            orphans += count(format!(
                "SELECT count(*) FROM {table} s WHERE NOT EXISTS (SELECT 1 FROM {parents} p WHERE p.id = s.parent_id)"
            ))
            .await;
            statuses += count(format!("SELECT count(*) FROM {table}")).await;
        }
    }
    eprintln!(
        "crash harness (PostgreSQL): {cycles} SIGKILL cycles, ~{acknowledged_ops} acknowledged creates among the operations, \
         {statuses} statuses, {orphans} orphans, {} violations",
        violations.len()
    );
    assert_eq!(orphans, 0, "orphan statuses");
    assert!(violations.is_empty(), "{violations:#?}");
}
