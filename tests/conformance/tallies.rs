//! Checks of "Tallies agree with the statuses": every status write changes
//! its parent's tally in the same write, so `get_tally` always equals a
//! count of what `list_statuses` shows.

use super::{create_parent_retrying, parent, status, Run};
use futures::future::join_all;
use statusd::error::Error;
use statusd::model::{ComplianceStatus, DateTime, Status, StatusBody, StatusKind, StatusShape, Tally};
use statusd::store::Store;
use std::sync::Arc;

/// A status of `shape` named `id` holding `value`.
pub fn status_valued(shape: StatusShape, id: &str, value: ComplianceStatus) -> Status {
    let mut s = status(shape, id);
    set_value(&mut s, value);
    s
}

/// Sets a status's `status` property.
fn set_value(s: &mut Status, value: ComplianceStatus) {
    match &mut s.body {
        StatusBody::User(u) => u.status = value,
        StatusBody::Device(d) => d.status = value,
    }
}

/// The value cycle the checks draw from (every value, some twice).
fn value(i: usize) -> ComplianceStatus {
    ComplianceStatus::ALL[i % ComplianceStatus::ALL.len()]
}

/// The counts of `parent_id`'s statuses of `kind`, by value, from every
/// page of `list_statuses` (pages of 7, so a count crosses pages).
async fn counted(store: &dyn Store, kind: StatusKind, parent_id: &str) -> [u64; 8] {
    let mut counts = [0; 8];
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_statuses(kind, parent_id, after.as_deref(), 7)
            .await
            .expect("list_statuses");
        let Some(last) = page.last() else { return counts };
        after = Some(last.id.clone());
        for s in &page {
            counts[s.body.status() as usize] += 1;
        }
    }
}

/// Asserts that `parent_id`'s tally of `kind` exists, equals a count of its
/// statuses, and was last updated no earlier than `since` (the moment before
/// the latest write under it, `None` to skip); returns it.
async fn assert_tally(
    store: &dyn Store,
    kind: StatusKind,
    parent_id: &str,
    since: Option<DateTime>,
    step: &str,
) -> Tally {
    let tally = store
        .get_tally(kind, parent_id)
        .await
        .expect("get_tally")
        .unwrap_or_else(|| panic!("{kind} '{parent_id}' {step}: no tally for an existing parent"));
    let counts = counted(store, kind, parent_id).await;
    assert_eq!(
        tally.counts, counts,
        "{kind} '{parent_id}' {step}: the tally (left) differs from a count of the listed statuses (right)"
    );
    if let Some(since) = since {
        assert!(
            tally.last_update >= since,
            "{kind} '{parent_id}' {step}: last_update {} is before the write at {since}",
            tally.last_update
        );
    }
    tally
}

/// Proves "Tallies agree with the statuses" write by write, for every status
/// collection: creates of several values under one parent (one more under
/// another), replaces that change the value and one that keeps it, refused
/// writes (a stale replace, a duplicate create, a delete of a missing
/// status) that must change nothing, deletes, and a burst of 50 concurrent
/// creates (the path a backend that groups creates takes) with duplicates
/// and creates under a missing parent among them. After every step the
/// tally equals a count over `list_statuses` and `last_update` never goes
/// back; a missing parent has no tally, and a parent deleted and created
/// again has an empty one.
pub async fn tallies_follow_every_write(store: Arc<dyn Store>) {
    let run = Run::new("tallies");
    for kind in StatusKind::ALL {
        let tag = format!("{}-{}", kind.parent.collection(), kind.segment());
        let pid = run.id(&tag);
        let other = run.id(&format!("{tag}-other"));
        let missing = run.id(&format!("{tag}-missing"));
        let shape = kind.shape;
        let s = store.as_ref();

        assert_eq!(
            s.get_tally(kind, &missing).await.unwrap(),
            None,
            "{kind}: a missing parent has no tally"
        );
        s.create_parent(kind.parent, &parent(kind.parent, &pid)).await.unwrap();
        s.create_parent(kind.parent, &parent(kind.parent, &other))
            .await
            .unwrap();
        assert_eq!(
            s.get_tally(kind, &pid).await.unwrap(),
            Some(Tally::default()),
            "{kind}: a new parent's tally is empty"
        );

        // Creates of every value, some twice; one under the other parent.
        let before = DateTime::now();
        let mut stored: Vec<Status> = (0..12)
            .map(|i| status_valued(shape, &format!("s{i:02}"), value(i)))
            .collect();
        for st in &stored {
            s.create_status(kind, &pid, st).await.expect("create_status");
        }
        s.create_status(kind, &other, &status_valued(shape, "s00", ComplianceStatus::Error))
            .await
            .unwrap();
        let mut latest = assert_tally(s, kind, &pid, Some(before), "after creates")
            .await
            .last_update;
        let other_tally = assert_tally(s, kind, &other, Some(before), "after its create").await;
        assert_eq!(other_tally.total(), 1);
        // The sibling collection of the same parent is counted apart.
        let sibling = kind.parent.status_kinds().into_iter().find(|k| *k != kind).unwrap();
        assert_eq!(
            s.get_tally(sibling, &pid).await.unwrap().map(|t| t.counts),
            Some([0; 8]),
            "{kind}: the statuses leak into {sibling}'s tally"
        );

        // Replaces: two change the value, one keeps it.
        let before = DateTime::now();
        for (i, to) in [(0, ComplianceStatus::Compliant), (1, ComplianceStatus::Conflict)] {
            let mut next = stored[i].clone();
            set_value(&mut next, to);
            assert!(s.replace_status(kind, &pid, &stored[i], &next).await.unwrap());
            stored[i] = next;
        }
        let mut same_value = stored[2].clone();
        match &mut same_value.body {
            StatusBody::User(u) => u.devices_count += 1,
            StatusBody::Device(d) => d.platform += 1,
        }
        assert!(s.replace_status(kind, &pid, &stored[2], &same_value).await.unwrap());
        let stale = stored[2].clone();
        stored[2] = same_value;
        let tally = assert_tally(s, kind, &pid, Some(before), "after replaces").await;
        assert!(tally.last_update >= latest, "{kind}: last_update went back");
        latest = tally.last_update;

        // Refused writes change nothing.
        let mut lost = stale.clone();
        set_value(&mut lost, ComplianceStatus::NonCompliant);
        assert!(
            !s.replace_status(kind, &pid, &stale, &lost).await.unwrap(),
            "stale replace"
        );
        assert!(
            matches!(
                s.create_status(kind, &pid, &status_valued(shape, "s03", ComplianceStatus::Error))
                    .await,
                Err(Error::AlreadyExists(_))
            ),
            "duplicate create"
        );
        assert!(!s.delete_status(kind, &pid, "absent").await.unwrap());
        let unchanged = assert_tally(s, kind, &pid, None, "after refused writes").await;
        assert_eq!(
            unchanged.counts, tally.counts,
            "{kind}: a refused write changed the tally"
        );

        // Deletes.
        let before = DateTime::now();
        for i in [3, 4, 11] {
            assert!(s.delete_status(kind, &pid, &stored[i].id).await.unwrap());
        }
        let tally = assert_tally(s, kind, &pid, Some(before), "after deletes").await;
        assert_eq!(tally.total(), 9, "{kind}: 12 created, 3 deleted");
        assert!(tally.last_update >= latest, "{kind}: last_update went back");

        // A burst of concurrent creates: new ids of every value, ids taken
        // already (AlreadyExists, not counted), and creates under a missing
        // parent (NotFound).
        let before = DateTime::now();
        let present = [0, 1, 2, 5, 6].map(|i| stored[i].id.clone());
        let creates = (0..50).map(|i| {
            let store = store.clone();
            let (target, st) = match i % 10 {
                7 => (pid.clone(), status_valued(shape, &present[i / 10], value(i + 3))),
                9 => (missing.clone(), status_valued(shape, &format!("m{i:02}"), value(i))),
                _ => (pid.clone(), status_valued(shape, &format!("b{i:02}"), value(i))),
            };
            tokio::spawn(async move { (i, store.create_status(kind, &target, &st).await) })
        });
        for r in join_all(creates).await {
            let (i, answer) = r.expect("create task");
            match (i % 10, answer) {
                (7, Err(Error::AlreadyExists(_))) | (9, Err(Error::NotFound(_))) | (0..=6 | 8, Ok(())) => {}
                (_, other) => panic!("{kind}: concurrent create {i}: unexpected {other:?}"),
            }
        }
        let tally = assert_tally(s, kind, &pid, Some(before), "after concurrent creates").await;
        assert_eq!(tally.total(), 9 + 40, "{kind}: 40 of the 50 concurrent creates are new");
        assert_eq!(s.get_tally(kind, &missing).await.unwrap(), None);
        assert_tally(s, kind, &other, None, "after the other parent's writes").await;

        // A parent deleted and created again starts with an empty tally; the
        // other parent's is untouched.
        assert!(s.delete_parent(kind.parent, &pid).await.unwrap());
        assert_eq!(
            s.get_tally(kind, &pid).await.unwrap(),
            None,
            "{kind}: a deleted parent has no tally"
        );
        create_parent_retrying(s, kind.parent, &parent(kind.parent, &pid)).await;
        let again = s.get_tally(kind, &pid).await.unwrap().expect("recreated parent");
        assert_eq!(
            again.counts, [0; 8],
            "{kind}: the recreated parent's tally shows its old statuses"
        );
        assert_eq!(
            assert_tally(s, kind, &other, None, "after the first parent's delete").await,
            other_tally,
            "{kind}: another parent's delete changed this tally"
        );
    }
}

/// Proves "Tallies agree with the statuses" under concurrency: `tasks`
/// tasks each make `ops` writes (creates, read + replace, deletes, of
/// several values) on an overlapping set of ids under one parent, so
/// writes of one id race and many fail (taken, changed, absent). Once all
/// are done the tally equals a full count of the statuses.
pub async fn tallies_under_concurrent_writers(store: Arc<dyn Store>, tasks: usize, ops: usize) {
    let run = Run::new("tally-race");
    let kind = StatusKind::ALL[0];
    let pid = run.id("p");
    store
        .create_parent(kind.parent, &parent(kind.parent, &pid))
        .await
        .unwrap();
    // A bystander parent of the same collection, written alongside.
    let bystander = run.id("bystander");
    store
        .create_parent(kind.parent, &parent(kind.parent, &bystander))
        .await
        .unwrap();
    let ids: Vec<String> = (0..12).map(|i| format!("c{i:02}")).collect();
    let writers = (0..tasks).map(|t| {
        let (store, pid, bystander, ids) = (store.clone(), pid.clone(), bystander.clone(), ids.clone());
        tokio::spawn(async move {
            // A small deterministic generator per task.
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1);
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as usize
            };
            for op in 0..ops {
                let id = &ids[next() % ids.len()];
                let to = value(next());
                match next() % 3 {
                    0 => match store
                        .create_status(kind, &pid, &status_valued(kind.shape, id, to))
                        .await
                    {
                        Ok(()) | Err(Error::AlreadyExists(_)) => {}
                        Err(e) => panic!("task {t} op {op}: create {id}: {e:?}"),
                    },
                    1 => {
                        if let Some(current) = store.get_status(kind, &pid, id).await.unwrap() {
                            let mut changed = current.clone();
                            // Every other replace keeps the value.
                            if op % 2 == 0 {
                                set_value(&mut changed, to);
                            }
                            match &mut changed.body {
                                StatusBody::User(u) => u.devices_count += 1,
                                StatusBody::Device(d) => d.platform += 1,
                            }
                            store.replace_status(kind, &pid, &current, &changed).await.unwrap();
                        }
                    }
                    _ => {
                        store.delete_status(kind, &pid, id).await.unwrap();
                    }
                }
                if op % 10 == 0 {
                    let sid = format!("t{t}-{op}");
                    store
                        .create_status(kind, &bystander, &status_valued(kind.shape, &sid, to))
                        .await
                        .unwrap();
                }
            }
        })
    });
    for w in join_all(writers).await {
        w.expect("writer task");
    }
    let tally = assert_tally(store.as_ref(), kind, &pid, None, "after the concurrent writers").await;
    assert!(tally.total() <= ids.len() as u64);
    let bystanders = assert_tally(store.as_ref(), kind, &bystander, None, "after the concurrent writers").await;
    assert_eq!(bystanders.total(), (tasks * ops.div_ceil(10)) as u64);
    // Deleting every id empties the tally.
    for id in &ids {
        store.delete_status(kind, &pid, id).await.unwrap();
    }
    assert_eq!(
        assert_tally(store.as_ref(), kind, &pid, None, "after deleting every id")
            .await
            .counts,
        [0; 8]
    );
}
