//! The store conformance suite: the contract of `statusd::store` (its module
//! docs and the `Store` trait) as one set of checks that every backend runs
//! unchanged, in the manner of object_store's `integration.rs`.
//!
//! Each check is a `pub async fn` that takes the store through the trait only
//! (`Arc<dyn Store>`), or a [`Backend`] when it must reopen the storage, and
//! panics with a message naming the broken promise. A backend's test file
//! (`tests/store_conformance.rs` for sled) calls every check, one test each;
//! a PostgreSQL backend calls the same functions.
//!
//! The checks make their own ids (see [`Run`]) and only ever assert about
//! those, so they may share one database with other data and with each other.
#![allow(dead_code)]

mod tallies;

// `status_valued` is for the PostgreSQL migration tests, which sled's file lacks.
#[allow(unused_imports)]
pub use tallies::{status_valued, tallies_follow_every_write, tallies_under_concurrent_writers};

use futures::future::join_all;
use statusd::error::Error;
use statusd::model::{DateTime, Parent, ParentKind, Status, StatusBody, StatusKind, StatusShape};
use statusd::store::Store;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A backend under test: how to open (and, after every handle is dropped,
/// reopen) the same storage.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Names the backend in failure messages.
    fn name(&self) -> &str;
    /// Opens the storage. Called again only once every handle of the previous
    /// open has been dropped.
    async fn open(&self) -> Arc<dyn Store>;
}

/// Ids unique to one run of one check: `<check>-<nanos>-<local>`.
pub struct Run(String);

impl Run {
    /// A fresh prefix for `check`.
    pub fn new(check: &str) -> Run {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        Run(format!("{check}-{nanos:x}"))
    }

    /// An id of this run.
    pub fn id(&self, local: &str) -> String {
        format!("{}-{local}", self.0)
    }

    /// Whether `id` belongs to this run.
    pub fn owns(&self, id: &str) -> bool {
        id.starts_with(&format!("{}-", self.0))
    }
}

/// A valid parent of `kind`, as the service would store it on create.
pub fn parent(kind: ParentKind, id: &str) -> Parent {
    let odata_type = match kind {
        ParentKind::DeviceCompliancePolicy => "#microsoft.graph.windows10CompliancePolicy",
        ParentKind::MobileAppConfiguration => "#microsoft.graph.iosMobileAppConfiguration",
        ParentKind::DeviceConfiguration => "#microsoft.graph.windows10GeneralConfiguration",
    };
    let now = DateTime::now();
    let mut p = Parent::empty();
    p.id = id.to_owned();
    p.odata_type = odata_type.to_owned();
    p.display_name = format!("conformance {id}");
    p.created_date_time = now;
    p.last_modified_date_time = now;
    p.version = 1;
    if kind.has_targeted_mobile_apps() {
        p.targeted_mobile_apps = vec!["com.example.app".to_owned()];
    }
    p.additional_properties
        .insert("passwordRequired".to_owned(), serde_json::Value::Bool(true));
    p
}

/// A status of `shape` whose body names its id (so two statuses never have
/// equal bodies by accident).
pub fn status(shape: StatusShape, id: &str) -> Status {
    let mut body = StatusBody::default_for(shape);
    match &mut body {
        StatusBody::User(u) => {
            u.user_display_name = Some(format!("user {id}"));
            u.user_principal_name = Some(format!("{id}@example.com"));
        }
        StatusBody::Device(d) => {
            d.device_display_name = Some(format!("device {id}"));
            d.device_model = Some("Surface".to_owned());
            d.platform = 3;
        }
    }
    Status {
        id: id.to_owned(),
        body,
    }
}

/// The counter a compare-and-swap check increments: a user status's
/// `devicesCount`, a device status's `platform`.
fn counter(s: &mut Status) -> &mut i32 {
    match &mut s.body {
        StatusBody::User(u) => &mut u.devices_count,
        StatusBody::Device(d) => &mut d.platform,
    }
}

/// Every status id of `parent_id` in `kind`, paging `page` at a time.
pub async fn all_status_ids(store: &dyn Store, kind: StatusKind, parent_id: &str, page: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let got = store
            .list_statuses(kind, parent_id, after.as_deref(), page)
            .await
            .expect("list_statuses");
        let Some(last) = got.last() else { return out };
        after = Some(last.id.clone());
        out.extend(got.into_iter().map(|s| s.id));
    }
}

/// Every parent id of `kind` that `run` owns, paging `page` at a time.
async fn all_parent_ids(store: &dyn Store, kind: ParentKind, run: &Run, page: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let got = store
            .list_parents(kind, after.as_deref(), page)
            .await
            .expect("list_parents");
        let Some(last) = got.last() else { return out };
        after = Some(last.id.clone());
        out.extend(got.into_iter().map(|p| p.id).filter(|id| run.owns(id)));
    }
}

/// Creates a parent, retrying while the backend answers UNAVAILABLE because
/// a cascade delete of the same id is still running ("retry shortly").
pub async fn create_parent_retrying(store: &dyn Store, kind: ParentKind, p: &Parent) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match store.create_parent(kind, p).await {
            Ok(()) => return,
            Err(Error::Unavailable(why)) if Instant::now() < deadline => {
                assert!(why.contains("retry"), "UNAVAILABLE should say to retry: {why}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("recreating {kind} '{}': {e:?}", p.id),
        }
    }
}

/// Creates statuses `ids` of `kind` under `parent_id`, `width` at a time.
async fn create_statuses(store: &Arc<dyn Store>, kind: StatusKind, parent_id: &str, ids: &[String], width: usize) {
    for chunk in ids.chunks(width.max(1)) {
        let creates = chunk.iter().map(|id| {
            let store = store.clone();
            let s = status(kind.shape, id);
            let parent_id = parent_id.to_owned();
            tokio::spawn(async move { store.create_status(kind, &parent_id, &s).await })
        });
        for r in join_all(creates).await {
            r.expect("create task").expect("create_status");
        }
    }
}

fn assert_not_found<T: std::fmt::Debug>(r: statusd::error::Result<T>, what: &str) {
    match r {
        Err(Error::NotFound(_)) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn assert_already_exists<T: std::fmt::Debug>(r: statusd::error::Result<T>, what: &str) {
    match r {
        Err(Error::AlreadyExists(_)) => {}
        other => panic!("{what}: expected AlreadyExists, got {other:?}"),
    }
}

fn assert_invalid_field<T: std::fmt::Debug>(r: statusd::error::Result<T>, field: &str, what: &str) {
    match r {
        Err(Error::InvalidArgument { field: f, .. }) if f == field => {}
        other => panic!("{what}: expected InvalidArgument naming {field}, got {other:?}"),
    }
}

/// Proves the trait docs of the parent methods: "Inserts a new parent;
/// `AlreadyExists` if the id is taken", "Replaces `expected` by `new`;
/// `Ok(false)` if the stored record is no longer `expected` (changed or
/// deleted meanwhile)", "`Ok(false)` if absent", and that a parent reads
/// back exactly as written — for all three parent kinds.
pub async fn parent_crud(store: Arc<dyn Store>) {
    let run = Run::new("parent-crud");
    for kind in ParentKind::ALL {
        let id = run.id(kind.collection());
        let p = parent(kind, &id);
        assert_eq!(
            store.get_parent(kind, &id).await.unwrap(),
            None,
            "{kind}: absent before create"
        );
        store.create_parent(kind, &p).await.expect("create_parent");
        assert_eq!(
            store.get_parent(kind, &id).await.unwrap(),
            Some(p.clone()),
            "{kind}: read back"
        );
        let mut other = parent(kind, &id);
        other.display_name = "a different record with the same id".into();
        assert_already_exists(store.create_parent(kind, &other).await, "duplicate parent id");
        assert_eq!(
            store.get_parent(kind, &id).await.unwrap(),
            Some(p.clone()),
            "{kind}: duplicate changed nothing"
        );
        for k in ParentKind::ALL.into_iter().filter(|k| *k != kind) {
            assert_eq!(
                store.get_parent(k, &id).await.unwrap(),
                None,
                "{kind}'s id leaks into {k}"
            );
        }

        let mut next = p.clone();
        next.display_name = "renamed".into();
        next.description = Some("now described".into());
        next.version = 2;
        assert!(
            store.replace_parent(kind, &p, &next).await.unwrap(),
            "{kind}: replace from current"
        );
        assert_eq!(
            store.get_parent(kind, &id).await.unwrap(),
            Some(next.clone()),
            "{kind}: replaced"
        );
        let mut lost = p.clone();
        lost.display_name = "a lost update".into();
        assert!(
            !store.replace_parent(kind, &p, &lost).await.unwrap(),
            "{kind}: replace from a stale `expected` must be refused"
        );
        assert_eq!(
            store.get_parent(kind, &id).await.unwrap(),
            Some(next.clone()),
            "{kind}: stale replace wrote"
        );

        assert_eq!(all_parent_ids(store.as_ref(), kind, &run, 100).await, vec![id.clone()]);

        assert!(store.delete_parent(kind, &id).await.unwrap(), "{kind}: delete");
        assert_eq!(store.get_parent(kind, &id).await.unwrap(), None, "{kind}: deleted");
        assert!(
            !store.delete_parent(kind, &id).await.unwrap(),
            "{kind}: second delete is false"
        );
        assert!(
            !store.replace_parent(kind, &next, &lost).await.unwrap(),
            "{kind}: replace of a deleted parent must be refused"
        );
        assert_eq!(
            store.get_parent(kind, &id).await.unwrap(),
            None,
            "{kind}: replace resurrected it"
        );
        assert!(all_parent_ids(store.as_ref(), kind, &run, 100).await.is_empty());
    }
}

/// Proves the trait docs of the status methods for all six collections, both
/// shapes: "Inserts a status under an existing parent: `NotFound` if the
/// parent is missing, `AlreadyExists` if the status id is taken under it",
/// compare-and-swap `replace_status`, "Deletes a status; `Ok(false)` if
/// absent" — and that ids are scoped to their parent and collection.
pub async fn status_crud(store: Arc<dyn Store>) {
    let run = Run::new("status-crud");
    for kind in StatusKind::ALL {
        let tag = format!("{}-{}", kind.parent.collection(), kind.segment());
        let pid = run.id(&tag);
        let missing = run.id(&format!("{tag}-missing"));
        let s = status(kind.shape, "s1");

        assert_not_found(
            store.create_status(kind, &missing, &s).await,
            "status under a missing parent",
        );
        assert_eq!(store.get_status(kind, &missing, "s1").await.unwrap(), None);
        assert!(store.list_statuses(kind, &missing, None, 10).await.unwrap().is_empty());
        assert!(!store.delete_status(kind, &missing, "s1").await.unwrap());

        store
            .create_parent(kind.parent, &parent(kind.parent, &pid))
            .await
            .unwrap();
        assert_eq!(
            store.get_status(kind, &pid, "s1").await.unwrap(),
            None,
            "{kind}: absent before create"
        );
        store.create_status(kind, &pid, &s).await.expect("create_status");
        assert_eq!(
            store.get_status(kind, &pid, "s1").await.unwrap(),
            Some(s.clone()),
            "{kind}: read back"
        );
        assert_already_exists(
            store.create_status(kind, &pid, &status(kind.shape, "s1")).await,
            "duplicate status id",
        );
        let mut dup = s.clone();
        *counter(&mut dup) = 99;
        assert_already_exists(store.create_status(kind, &pid, &dup).await, "duplicate status id");
        assert_eq!(
            store.get_status(kind, &pid, "s1").await.unwrap(),
            Some(s.clone()),
            "{kind}: dup wrote"
        );

        // The same status id is free under another parent and in the other
        // shape's collection; neither is visible from here.
        let pid2 = run.id(&format!("{tag}-2"));
        store
            .create_parent(kind.parent, &parent(kind.parent, &pid2))
            .await
            .unwrap();
        let s2 = status(kind.shape, "s1-elsewhere");
        let s2 = Status { id: "s1".into(), ..s2 };
        store
            .create_status(kind, &pid2, &s2)
            .await
            .expect("same id under another parent");
        let sibling = kind.parent.status_kinds().into_iter().find(|k| *k != kind).unwrap();
        store
            .create_status(sibling, &pid, &status(sibling.shape, "s1"))
            .await
            .expect("same id in the other shape's collection");
        assert_eq!(
            store.get_status(kind, &pid, "s1").await.unwrap(),
            Some(s.clone()),
            "{kind}: scoped"
        );
        assert_eq!(
            all_status_ids(store.as_ref(), kind, &pid, 10).await,
            vec!["s1".to_owned()]
        );

        let mut next = s.clone();
        *counter(&mut next) = 7;
        assert!(
            store.replace_status(kind, &pid, &s, &next).await.unwrap(),
            "{kind}: replace"
        );
        assert_eq!(store.get_status(kind, &pid, "s1").await.unwrap(), Some(next.clone()));
        let mut lost = s.clone();
        *counter(&mut lost) = 8;
        assert!(
            !store.replace_status(kind, &pid, &s, &lost).await.unwrap(),
            "{kind}: replace from a stale `expected` must be refused"
        );
        assert_eq!(store.get_status(kind, &pid, "s1").await.unwrap(), Some(next.clone()));
        assert_eq!(
            store.get_status(kind, &pid2, "s1").await.unwrap(),
            Some(s2.clone()),
            "other parent touched"
        );

        assert!(store.delete_status(kind, &pid, "s1").await.unwrap(), "{kind}: delete");
        assert_eq!(store.get_status(kind, &pid, "s1").await.unwrap(), None);
        assert!(
            !store.delete_status(kind, &pid, "s1").await.unwrap(),
            "{kind}: second delete is false"
        );
        assert!(
            !store.replace_status(kind, &pid, &next, &lost).await.unwrap(),
            "{kind}: replace of a deleted status must be refused"
        );
        assert_eq!(
            store.get_status(kind, &pid, "s1").await.unwrap(),
            None,
            "{kind}: replace resurrected it"
        );
        assert!(all_status_ids(store.as_ref(), kind, &pid, 10).await.is_empty());
        assert_eq!(
            store.get_status(kind, &pid2, "s1").await.unwrap(),
            Some(s2),
            "other parent's status gone"
        );
    }
}

/// Proves "References checked with the write": a create or replace that sets
/// a certificate reference anew ([`Parent::new_references`]) must name an
/// existing device configuration (INVALID_ARGUMENT naming the property
/// otherwise); a reference the write leaves unchanged is not checked again,
/// so it stays valid after its target is deleted; a configuration may
/// reference itself.
pub async fn references(store: Arc<dyn Store>) {
    let run = Run::new("references");
    let kind = ParentKind::DeviceConfiguration;
    let target = run.id("target");
    let missing = run.id("missing");
    store.create_parent(kind, &parent(kind, &target)).await.unwrap();

    for field in ["rootCertificate", "identityCertificate"] {
        let set = |p: &mut Parent, to: &str| match field {
            "rootCertificate" => p.root_certificate_id = Some(to.to_owned()),
            _ => p.identity_certificate_id = Some(to.to_owned()),
        };
        // Create naming a missing configuration: refused, nothing stored.
        let id = run.id(&format!("{field}-referrer"));
        let mut p = parent(kind, &id);
        set(&mut p, &missing);
        assert_invalid_field(
            store.create_parent(kind, &p).await,
            field,
            "create with a dangling reference",
        );
        assert_eq!(
            store.get_parent(kind, &id).await.unwrap(),
            None,
            "a refused create stored a record"
        );

        // Create naming an existing one, and one naming itself.
        set(&mut p, &target);
        store
            .create_parent(kind, &p)
            .await
            .expect("create with a valid reference");
        let own = run.id(&format!("{field}-self"));
        let mut me = parent(kind, &own);
        set(&mut me, &own);
        store
            .create_parent(kind, &me)
            .await
            .expect("a configuration may reference itself");

        // Replace setting the reference anew to a missing one: refused.
        let mut bad = p.clone();
        set(&mut bad, &missing);
        assert_invalid_field(
            store.replace_parent(kind, &p, &bad).await,
            field,
            "replace with a dangling reference",
        );
        assert_eq!(
            store.get_parent(kind, &id).await.unwrap(),
            Some(p.clone()),
            "a refused replace wrote"
        );
    }

    // Delete the target: the references left unchanged stay valid through
    // replaces that do not touch them.
    let root_referrer = run.id("rootCertificate-referrer");
    let stored = store.get_parent(kind, &root_referrer).await.unwrap().unwrap();
    assert!(store.delete_parent(kind, &target).await.unwrap());
    let mut renamed = stored.clone();
    renamed.display_name = "renamed after the target went".into();
    assert!(
        store.replace_parent(kind, &stored, &renamed).await.unwrap(),
        "a replace that leaves a (now dangling) reference unchanged must succeed"
    );
    // Setting the other reference anew to the deleted target is refused.
    let mut rebind = renamed.clone();
    rebind.identity_certificate_id = Some(target.clone());
    assert_invalid_field(
        store.replace_parent(kind, &renamed, &rebind).await,
        "identityCertificate",
        "binding a reference to a deleted configuration",
    );
    // Changing the kept reference to another missing id is a new reference.
    let mut moved = renamed.clone();
    moved.root_certificate_id = Some(missing.clone());
    assert_invalid_field(
        store.replace_parent(kind, &renamed, &moved).await,
        "rootCertificate",
        "moving a reference to a missing configuration",
    );
    // Clearing a reference needs no target.
    let mut cleared = renamed.clone();
    cleared.root_certificate_id = None;
    assert!(store.replace_parent(kind, &renamed, &cleared).await.unwrap());
    assert_eq!(store.get_parent(kind, &root_referrer).await.unwrap(), Some(cleared));
}

/// Proves "Atomic parent check": `create_status` inserts only while the
/// parent exists, atomically with respect to a concurrent `delete_parent` —
/// and, with "Cascade", that no status a racing create acknowledged
/// survives the delete: none is visible after it returns, and none
/// resurfaces when the parent id is created again. Many tasks create
/// statuses of both shapes while one task deletes the parent, `rounds`
/// times; as many create statuses under a bystander parent of the same
/// collection meanwhile, and every one of those acknowledged must be
/// stored (a backend that writes creates in groups must not let the
/// deleted parent's failure take a bystander's acknowledged row with it). Returns the ids of every parent it used (a backend's own test may
/// look inside the storage for orphans afterwards).
pub async fn atomic_parent_check_under_race(store: Arc<dyn Store>, rounds: usize, writers: usize) -> Vec<String> {
    let run = Run::new("race");
    let kind = ParentKind::DeviceCompliancePolicy;
    let mut parents = Vec::new();
    let mut acknowledged_total = 0;
    for round in 0..rounds {
        let pid = run.id(&format!("p{round}"));
        store.create_parent(kind, &parent(kind, &pid)).await.unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let (store, pid, started) = (store.clone(), pid.clone(), started.clone());
                tokio::spawn(async move {
                    let sk = kind.status_kinds()[w % 2];
                    let mut acknowledged = Vec::new();
                    for i in 0.. {
                        let s = status(sk.shape, &format!("w{w}-{i:05}"));
                        match store.create_status(sk, &pid, &s).await {
                            Ok(()) => acknowledged.push((sk, s.id)),
                            Err(Error::NotFound(_)) => return acknowledged,
                            Err(e) => panic!("create_status while racing a delete: {e:?}"),
                        }
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                    unreachable!()
                })
            })
            .collect();
        let bystander = run.id(&format!("bystander{round}"));
        store.create_parent(kind, &parent(kind, &bystander)).await.unwrap();
        let stop_bystanders = Arc::new(AtomicBool::new(false));
        let bystanders: Vec<_> = (0..writers)
            .map(|w| {
                let (store, bystander, stop) = (store.clone(), bystander.clone(), stop_bystanders.clone());
                tokio::spawn(async move {
                    let sk = kind.status_kinds()[w % 2];
                    let mut acknowledged = Vec::new();
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let s = status(sk.shape, &format!("b{w}-{i:05}"));
                        store.create_status(sk, &bystander, &s).await.unwrap();
                        acknowledged.push((sk, s.id));
                    }
                    acknowledged
                })
            })
            .collect();
        // Delete once the writers are under way (and keep writing).
        while started.load(Ordering::Relaxed) < writers * 3 {
            tokio::task::yield_now().await;
        }
        assert!(
            store.delete_parent(kind, &pid).await.unwrap(),
            "the delete finds the parent"
        );
        let mut acknowledged = Vec::new();
        for t in tasks {
            acknowledged.extend(t.await.expect("writer task"));
        }
        assert!(!acknowledged.is_empty());
        stop_bystanders.store(true, Ordering::Relaxed);
        for t in bystanders {
            for (sk, id) in t.await.expect("bystander task") {
                assert!(
                    store.get_status(sk, &bystander, &id).await.unwrap().is_some(),
                    "round {round}: {sk} {id} of the bystander parent was acknowledged but is not stored"
                );
            }
        }
        acknowledged_total += acknowledged.len();
        for sk in kind.status_kinds() {
            assert!(
                store.list_statuses(sk, &pid, None, 10).await.unwrap().is_empty(),
                "round {round}: {sk} of a deleted parent listed"
            );
        }
        for (sk, id) in &acknowledged {
            assert_eq!(
                store.get_status(*sk, &pid, id).await.unwrap(),
                None,
                "round {round}: {id} visible"
            );
        }
        // Same id again: an orphan left behind would now reappear.
        create_parent_retrying(store.as_ref(), kind, &parent(kind, &pid)).await;
        for sk in kind.status_kinds() {
            assert_eq!(
                all_status_ids(store.as_ref(), sk, &pid, 1000).await,
                Vec::<String>::new(),
                "round {round}: a status created during the delete survived it into the recreated parent"
            );
        }
        for (sk, id) in &acknowledged {
            assert_eq!(
                store.get_status(*sk, &pid, id).await.unwrap(),
                None,
                "round {round}: {id} resurfaced"
            );
        }
        parents.push(pid);
    }
    assert!(
        acknowledged_total > rounds,
        "the writers barely ran; the race was not exercised"
    );
    parents
}

/// Proves "Cascade": `delete_parent` removes the parent and all its statuses
/// of both shapes; from its return on none is visible (get, list, replace
/// and delete answer as for a missing parent, a create is NotFound) even
/// while a large cascade may still run in the background; recreating the
/// id (retrying while UNAVAILABLE says "retry shortly") shows none of the
/// old statuses. Checked for every parent kind with a few statuses, and for
/// one parent with `large` statuses of each shape (large enough to outlast
/// any inline part of a backend's cascade).
pub async fn cascade(store: Arc<dyn Store>, large: usize) {
    let run = Run::new("cascade");
    let mut cases: Vec<(ParentKind, usize)> = ParentKind::ALL.into_iter().map(|k| (k, 3)).collect();
    cases.push((ParentKind::DeviceCompliancePolicy, large));
    for (n, (kind, per_shape)) in cases.into_iter().enumerate() {
        let pid = run.id(&format!("{}-{n}", kind.collection()));
        store.create_parent(kind, &parent(kind, &pid)).await.unwrap();
        let ids: Vec<String> = (0..per_shape).map(|i| format!("s{i:06}")).collect();
        for sk in kind.status_kinds() {
            create_statuses(&store, sk, &pid, &ids, 32).await;
        }
        // A bystander parent's statuses are untouched.
        let bystander = run.id(&format!("{}-{n}-bystander", kind.collection()));
        store.create_parent(kind, &parent(kind, &bystander)).await.unwrap();
        for sk in kind.status_kinds() {
            store
                .create_status(sk, &bystander, &status(sk.shape, "s000000"))
                .await
                .unwrap();
        }
        let first = ids[0].clone();
        let last = ids[per_shape - 1].clone();
        let kept: Vec<Status> = {
            let mut v = Vec::new();
            for sk in kind.status_kinds() {
                v.push(store.get_status(sk, &pid, &last).await.unwrap().expect("created"));
            }
            v
        };

        assert!(store.delete_parent(kind, &pid).await.unwrap());
        // Nothing of it is visible, at once.
        assert_eq!(store.get_parent(kind, &pid).await.unwrap(), None);
        for (sk, old) in kind.status_kinds().into_iter().zip(&kept) {
            let listed = store.list_statuses(sk, &pid, None, 5).await.unwrap();
            assert!(
                listed.is_empty(),
                "{sk}: statuses of a deleted parent are listed: {:?}",
                ids_of(&listed)
            );
            let listed = store.list_statuses(sk, &pid, Some(&first), 5).await.unwrap();
            assert!(
                listed.is_empty(),
                "{sk}: statuses of a deleted parent are listed: {:?}",
                ids_of(&listed)
            );
            assert_eq!(
                store.get_status(sk, &pid, &first).await.unwrap(),
                None,
                "{sk}: {first} visible"
            );
            assert_eq!(
                store.get_status(sk, &pid, &last).await.unwrap(),
                None,
                "{sk}: {last} visible"
            );
            let mut changed = old.clone();
            *counter(&mut changed) += 1;
            assert!(
                !store.replace_status(sk, &pid, old, &changed).await.unwrap(),
                "{sk}: replace of a status of a deleted parent succeeded"
            );
            assert!(
                !store.delete_status(sk, &pid, &last).await.unwrap(),
                "{sk}: delete of a status of a deleted parent succeeded"
            );
            assert_not_found(
                store.create_status(sk, &pid, &status(sk.shape, "new")).await,
                "create under a deleted parent",
            );
        }
        for sk in kind.status_kinds() {
            assert_eq!(
                all_status_ids(store.as_ref(), sk, &bystander, 10).await,
                vec!["s000000".to_owned()],
                "{sk}: the cascade reached another parent"
            );
        }

        create_parent_retrying(store.as_ref(), kind, &parent(kind, &pid)).await;
        for sk in kind.status_kinds() {
            let left = all_status_ids(store.as_ref(), sk, &pid, 500).await;
            assert!(
                left.is_empty(),
                "{sk}: the recreated parent shows {} old statuses",
                left.len()
            );
            assert_eq!(store.get_status(sk, &pid, &first).await.unwrap(), None);
            assert_eq!(store.get_status(sk, &pid, &last).await.unwrap(), None);
        }
    }
}

fn ids_of(statuses: &[Status]) -> Vec<&str> {
    statuses.iter().map(|s| s.id.as_str()).collect()
}

/// Proves "Compare-and-swap updates": `replace_*` writes only if the stored
/// record still equals `expected`, so concurrent updates never lose one.
/// `tasks` tasks each add one, `per_task` times, to a status counter of each
/// shape and to a parent's `version`, by read + replace retry loops; every
/// final value equals the number of replaces that answered `true`.
pub async fn compare_and_swap(store: Arc<dyn Store>, tasks: usize, per_task: usize) {
    let run = Run::new("cas");
    let kind = ParentKind::MobileAppConfiguration;
    let pid = run.id("p");
    store.create_parent(kind, &parent(kind, &pid)).await.unwrap();
    for sk in kind.status_kinds() {
        store
            .create_status(sk, &pid, &status(sk.shape, "counter"))
            .await
            .unwrap();
    }
    let successes = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (store, pid, successes) = (store.clone(), pid.clone(), successes.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let sk = kind.status_kinds()[t % 2];
                    loop {
                        let current = store.get_status(sk, &pid, "counter").await.unwrap().unwrap();
                        let mut next = current.clone();
                        *counter(&mut next) += 1;
                        if store.replace_status(sk, &pid, &current, &next).await.unwrap() {
                            successes.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    loop {
                        let current = store.get_parent(kind, &pid).await.unwrap().unwrap();
                        let mut next = current.clone();
                        next.version += 1;
                        next.last_modified_date_time = DateTime::now();
                        if store.replace_parent(kind, &current, &next).await.unwrap() {
                            successes.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("incrementing task");
    }
    assert_eq!(successes.load(Ordering::Relaxed), 2 * tasks * per_task);
    let mut total = 0;
    for sk in kind.status_kinds() {
        let mut s = store.get_status(sk, &pid, "counter").await.unwrap().unwrap();
        let base = *counter(&mut status(sk.shape, "counter"));
        total += (*counter(&mut s) - base) as usize;
    }
    assert_eq!(total, tasks * per_task, "status increments were lost");
    let p = store.get_parent(kind, &pid).await.unwrap().unwrap();
    assert_eq!(p.version as usize, 1 + tasks * per_task, "parent increments were lost");
}

/// Proves "Ordered paging": lists return records in id (byte) order,
/// starting strictly after `after`, at most `limit` of them. Ids are chosen
/// so byte order differs from any case-insensitive or locale collation
/// (`B` < `_` < `a`, digits before letters, multi-byte UTF-8 last), and an
/// `after` that names no stored record still starts right after it.
pub async fn ordered_paging(store: Arc<dyn Store>) {
    let run = Run::new("order");
    let kind = ParentKind::DeviceConfiguration;
    let pid = run.id("p");
    store.create_parent(kind, &parent(kind, &pid)).await.unwrap();
    let names = [
        "b", "B", "a", "A", "_", "-", "0", "9", "aa", "a-b", "a_b", "Ä", "é", "z", "Z", "~", "a0",
    ];
    let sk = kind.status_kinds()[1];
    for n in names {
        store.create_status(sk, &pid, &status(sk.shape, n)).await.unwrap();
        store.create_parent(kind, &parent(kind, &run.id(n))).await.unwrap();
    }
    let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sorted.sort(); // String's Ord is byte order.
    for limit in [1, 2, 5, 100] {
        let mut got = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.list_statuses(sk, &pid, after.as_deref(), limit).await.unwrap();
            assert!(page.len() <= limit, "a page of {} for limit {limit}", page.len());
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            got.extend(page.into_iter().map(|s| s.id));
        }
        assert_eq!(got, sorted, "statuses in pages of {limit}");
    }
    let parents = all_parent_ids(store.as_ref(), kind, &run, 3).await;
    let mut expected: Vec<String> = names.iter().map(|n| run.id(n)).chain([pid.clone()]).collect();
    expected.sort();
    assert_eq!(parents, expected, "parents in byte order");
    // `after` is exclusive, and need not exist.
    let page = store.list_statuses(sk, &pid, Some("a"), 2).await.unwrap();
    assert_eq!(ids_of(&page), ["a-b", "a0"]);
    let page = store.list_statuses(sk, &pid, Some("a+"), 2).await.unwrap();
    assert_eq!(ids_of(&page), ["a-b", "a0"]);
    let page = store.list_statuses(sk, &pid, Some("~"), 2).await.unwrap();
    assert_eq!(ids_of(&page), ["Ä", "é"]);
    assert!(store.list_statuses(sk, &pid, Some("é"), 2).await.unwrap().is_empty());
    assert!(
        store.list_statuses(sk, &pid, None, 0).await.unwrap().is_empty(),
        "limit 0"
    );
}

/// Proves "Ordered paging" while the collection changes: a reader pages
/// through a parent's statuses `page` at a time while other tasks insert
/// ids before and after its cursor and delete others. Every id that existed
/// throughout is returned exactly once, the ids come in strictly increasing
/// order (so none twice), and every returned id is one that existed at some
/// point.
pub async fn paging_while_changing(store: Arc<dyn Store>, stable: usize, page: usize) {
    let run = Run::new("paging");
    let kind = ParentKind::DeviceCompliancePolicy;
    let sk = kind.status_kinds()[0];
    let pid = run.id("p");
    store.create_parent(kind, &parent(kind, &pid)).await.unwrap();
    // Even slots stay; odd slots are deleted while the reader pages.
    let stable_ids: Vec<String> = (0..stable).map(|i| format!("k{:05}", 2 * i)).collect();
    let doomed: Vec<String> = (0..stable).map(|i| format!("k{:05}", 2 * i + 1)).collect();
    create_statuses(&store, sk, &pid, &stable_ids, 32).await;
    create_statuses(&store, sk, &pid, &doomed, 32).await;

    let done = Arc::new(AtomicBool::new(false));
    let cursor = Arc::new(std::sync::Mutex::new(String::new()));
    let inserter = {
        let (store, pid, done, cursor) = (store.clone(), pid.clone(), done.clone(), cursor.clone());
        tokio::spawn(async move {
            let mut inserted = 0usize;
            let mut slot = 0usize;
            while !done.load(Ordering::Relaxed) {
                // Alternately just behind the cursor, just ahead of it, and
                // far ahead: `k<slot>x<n>` sorts right after `k<slot>`.
                let at = cursor
                    .lock()
                    .unwrap()
                    .get(1..6)
                    .and_then(|d| d.parse::<usize>().ok())
                    .unwrap_or(0);
                let base = match inserted % 3 {
                    0 => at.saturating_sub(1),
                    1 => at + 1,
                    _ => (at + 40 + slot) % (2 * stable),
                };
                slot += 7;
                let id = format!("k{base:05}x{inserted}");
                store.create_status(sk, &pid, &status(sk.shape, &id)).await.unwrap();
                inserted += 1;
                tokio::task::yield_now().await;
            }
            inserted
        })
    };
    let deleter = {
        let (store, pid, done) = (store.clone(), pid.clone(), done.clone());
        let doomed = doomed.clone();
        tokio::spawn(async move {
            // Delete the odd slots in an order that hits both sides of the cursor.
            let mut order: Vec<usize> = (0..doomed.len()).collect();
            order.sort_by_key(|i| (i * 7919) % doomed.len());
            let mut deleted = 0;
            for i in order {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                assert!(store.delete_status(sk, &pid, &doomed[i]).await.unwrap());
                deleted += 1;
                tokio::task::yield_now().await;
            }
            deleted
        })
    };

    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let got = store.list_statuses(sk, &pid, after.as_deref(), page).await.unwrap();
        assert!(got.len() <= page);
        let Some(last) = got.last() else { break };
        after = Some(last.id.clone());
        *cursor.lock().unwrap() = last.id.clone();
        seen.extend(got.into_iter().map(|s| s.id));
        // Let the writers move between pages.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    done.store(true, Ordering::Relaxed);
    let inserted = inserter.await.expect("inserter");
    let deleted = deleter.await.expect("deleter");

    for pair in seen.windows(2) {
        assert!(
            pair[0] < pair[1],
            "out of order or repeated: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    let seen_set: BTreeSet<&String> = seen.iter().collect();
    for id in &stable_ids {
        assert!(seen_set.contains(id), "{id} existed throughout but was not listed");
    }
    let doomed_set: BTreeSet<&String> = doomed.iter().collect();
    for id in &seen {
        let known = stable_ids.binary_search(id).is_ok() || doomed_set.contains(id) || id.contains('x');
        assert!(known, "{id} was never stored");
    }
    assert!(
        inserted > 0 && deleted > 0,
        "the writers did not run ({inserted} inserts, {deleted} deletes)"
    );
}

/// Proves "Durable on return": every mutation that returned `Ok` is there
/// after the store is closed and opened again — creates, replaces, deletes
/// and a cascade, of every kind. (Closing is a drop, which a backend may
/// use to flush; a crash test of the backend proves the stronger claim.)
pub async fn durable_on_return(backend: &dyn Backend) {
    let run = Run::new("durable");
    let mut parents: Vec<(ParentKind, Parent)> = Vec::new();
    let mut statuses: Vec<(StatusKind, String, Status)> = Vec::new();
    let mut gone_parents: Vec<(ParentKind, String)> = Vec::new();
    let mut gone_statuses: Vec<(StatusKind, String, String)> = Vec::new();
    {
        let store = backend.open().await;
        for kind in ParentKind::ALL {
            let pid = run.id(kind.collection());
            let p = parent(kind, &pid);
            store.create_parent(kind, &p).await.unwrap();
            let mut p2 = p.clone();
            p2.display_name = "replaced before the close".into();
            p2.version = 2;
            assert!(store.replace_parent(kind, &p, &p2).await.unwrap());
            parents.push((kind, p2));
            for sk in kind.status_kinds() {
                for i in 0..5 {
                    let s = status(sk.shape, &format!("s{i}"));
                    store.create_status(sk, &pid, &s).await.unwrap();
                    match i {
                        0 => {
                            assert!(store.delete_status(sk, &pid, &s.id).await.unwrap());
                            gone_statuses.push((sk, pid.clone(), s.id));
                        }
                        1 => {
                            let mut next = s.clone();
                            *counter(&mut next) = 42;
                            assert!(store.replace_status(sk, &pid, &s, &next).await.unwrap());
                            statuses.push((sk, pid.clone(), next));
                        }
                        _ => statuses.push((sk, pid.clone(), s)),
                    }
                }
            }
            // A parent deleted with its statuses.
            let doomed = run.id(&format!("{}-deleted", kind.collection()));
            store.create_parent(kind, &parent(kind, &doomed)).await.unwrap();
            for sk in kind.status_kinds() {
                store.create_status(sk, &doomed, &status(sk.shape, "s0")).await.unwrap();
                gone_statuses.push((sk, doomed.clone(), "s0".into()));
            }
            assert!(store.delete_parent(kind, &doomed).await.unwrap());
            gone_parents.push((kind, doomed));
        }
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "{}: the check holds the only handle, so dropping it closes the store",
            backend.name()
        );
    }
    let store = backend.open().await;
    for (kind, p) in &parents {
        assert_eq!(
            store.get_parent(*kind, &p.id).await.unwrap().as_ref(),
            Some(p),
            "{}: parent lost",
            backend.name()
        );
    }
    for (sk, pid, s) in &statuses {
        assert_eq!(
            store.get_status(*sk, pid, &s.id).await.unwrap().as_ref(),
            Some(s),
            "{}: status lost",
            backend.name()
        );
    }
    for (kind, id) in &gone_parents {
        assert_eq!(
            store.get_parent(*kind, id).await.unwrap(),
            None,
            "{}: a deleted parent is back",
            backend.name()
        );
    }
    for (sk, pid, id) in &gone_statuses {
        assert_eq!(
            store.get_status(*sk, pid, id).await.unwrap(),
            None,
            "{}: a deleted status is back",
            backend.name()
        );
    }
    for (kind, p) in &parents {
        for sk in kind.status_kinds() {
            let ids = all_status_ids(store.as_ref(), sk, &p.id, 2).await;
            assert_eq!(
                ids,
                ["s1", "s2", "s3", "s4"],
                "{}: {sk} after reopening",
                backend.name()
            );
        }
    }
    // The cascades are durable too: a deleted parent's id, created again,
    // shows none of its old statuses.
    for (kind, id) in &gone_parents {
        create_parent_retrying(store.as_ref(), *kind, &parent(*kind, id)).await;
        for sk in kind.status_kinds() {
            let left = all_status_ids(store.as_ref(), sk, id, 10).await;
            assert!(
                left.is_empty(),
                "{}: {sk} of a deleted parent came back: {left:?}",
                backend.name()
            );
        }
    }
}
