//! `statusd import FILE|-`: JSON lines of Graph-shaped entities (what
//! `statusd export` writes, or Graph's own GET responses) into a running
//! server, through its API, so every record passes the same validation as
//! any client's.
//!
//! Each line's `@odata.context` says where the entity goes:
//! `…/{v1.0|beta|localtest}/$metadata#deviceManagement/deviceCompliancePolicies/$entity`
//! for a parent, `…#deviceManagement/deviceCompliancePolicies('p1')/userStatuses/$entity`
//! for a status. A record whose id exists already is compared with what is
//! stored: equal is "unchanged" (so a re-run creates nothing), different is
//! rejected. A status whose parent comes later in the input is retried at
//! the end. Certificate references (`…@odata.bind`) are set once every
//! parent is in. Every rejected line is reported with its number and reason;
//! the summary counts created, unchanged and rejected lines, and the exit
//! status is 1 when any line was rejected.

use super::api::{Api, ApiArgs};
use super::progress::Progress;
use crate::model::{DateTime, ParentKind, StatusKind};
use serde_json::{Map, Value};
use std::io::BufRead;

/// `statusd import` flags.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The JSON lines to import (`-`: standard input).
    pub input: String,
}

/// Where a line's entity goes.
enum Target {
    Parent(ParentKind),
    Status(StatusKind, String),
}

/// One line to write.
struct Entry {
    line: usize,
    version: String,
    target: Target,
    body: Map<String, Value>,
}

#[derive(Default)]
struct Summary {
    created: u64,
    unchanged: u64,
    rejected: u64,
    references: u64,
}

/// What became of one write.
enum Outcome {
    Created,
    Unchanged,
    /// The parent is not there (yet).
    NoParent,
    Rejected(String),
}

/// Runs the import.
pub async fn run(args: &ImportArgs) -> Result<(), String> {
    let api = Api::new(&args.api)?;
    let (reader, total): (Box<dyn BufRead>, Option<u64>) = if args.input == "-" {
        (Box::new(std::io::BufReader::new(std::io::stdin())), None)
    } else {
        let open = || std::fs::File::open(&args.input).map_err(|e| format!("cannot open {}: {e}", args.input));
        let lines = std::io::BufReader::new(open()?).lines().count() as u64;
        (Box::new(std::io::BufReader::new(open()?)), Some(lines))
    };
    let mut progress = Progress::new("import", total);
    progress.start(&args.input);
    let mut summary = Summary::default();
    let mut later: Vec<Entry> = Vec::new();
    let mut binds: Vec<(usize, String, String, Map<String, Value>)> = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let n = n + 1;
        let line = line.map_err(|e| format!("cannot read {} at line {n}: {e}", args.input))?;
        progress.inc(1);
        if line.trim().is_empty() {
            continue;
        }
        let entry = match parse(n, &line) {
            Ok(e) => e,
            Err(reason) => {
                reject(&mut progress, &mut summary, n, &reason);
                continue;
            }
        };
        if let Target::Parent(kind) = entry.target {
            let refs: Map<String, Value> = entry
                .body
                .iter()
                .filter(|(k, _)| k.ends_with("@odata.bind"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !refs.is_empty() {
                let id = entry.body["id"].as_str().unwrap_or_default().to_owned();
                binds.push((
                    n,
                    entry.version.clone(),
                    api.parent_url(&entry.version, kind, &id),
                    refs,
                ));
            }
        }
        match write(&api, &entry).await? {
            Outcome::NoParent => later.push(entry),
            outcome => count(&mut progress, &mut summary, n, outcome),
        }
    }
    // Statuses that came before their parent.
    for entry in later {
        let outcome = match write(&api, &entry).await? {
            Outcome::NoParent => {
                Outcome::Rejected("its parent does not exist (not in the input, not on the server)".into())
            }
            o => o,
        };
        count(&mut progress, &mut summary, entry.line, outcome);
    }
    // Certificate references, every parent being in.
    for (n, _version, url, mut refs) in binds {
        // A reference already bound to the same target is left alone (a
        // PATCH would bump the configuration's version on every re-run).
        let mut unchanged = Vec::new();
        for (key, target) in &refs {
            let nav = key.trim_end_matches("@odata.bind");
            let current = api
                .send(reqwest::Method::GET, &format!("{url}/{nav}/$ref"), None)
                .await?;
            let now = current.body["@odata.id"].as_str().and_then(bound_id);
            if current.status == 200 && now.is_some() && now == target.as_str().and_then(bound_id) {
                unchanged.push(key.clone());
            }
        }
        refs.retain(|k, _| !unchanged.contains(k));
        if refs.is_empty() {
            continue;
        }
        let a = api
            .send(reqwest::Method::PATCH, &url, Some(&Value::Object(refs)))
            .await?;
        if a.status == 200 {
            summary.references += 1;
        } else {
            reject(
                &mut progress,
                &mut summary,
                n,
                &format!("its certificate references: {}", a.error_message()),
            );
        }
    }
    progress.finish();
    eprintln!(
        "import: {} created, {} unchanged, {} rejected; certificate references set on {} parents",
        summary.created, summary.unchanged, summary.rejected, summary.references
    );
    if summary.rejected > 0 {
        return Err(format!("{} lines were rejected (listed above)", summary.rejected));
    }
    Ok(())
}

/// The configuration a bind URL names (the server's own reading of it).
fn bound_id(url: &str) -> Option<String> {
    crate::rest::json::bound_id("@odata.bind", url).ok()
}

fn reject(progress: &mut Progress, summary: &mut Summary, line: usize, reason: &str) {
    summary.rejected += 1;
    progress.warn(&format!("line {line}: rejected: {reason}"));
}

fn count(progress: &mut Progress, summary: &mut Summary, line: usize, outcome: Outcome) {
    match outcome {
        Outcome::Created => summary.created += 1,
        Outcome::Unchanged => summary.unchanged += 1,
        Outcome::Rejected(reason) => reject(progress, summary, line, &reason),
        Outcome::NoParent => reject(progress, summary, line, "its parent does not exist"),
    }
}

/// Reads one line: a JSON object with an `@odata.context` naming a
/// collection statusd serves.
fn parse(line: usize, text: &str) -> Result<Entry, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut body) = value else {
        return Err("not a JSON object".into());
    };
    let context = body
        .remove("@odata.context")
        .and_then(|c| c.as_str().map(str::to_owned))
        .ok_or("no @odata.context saying where the entity goes")?;
    let (url, fragment) = context
        .split_once("/$metadata#")
        .ok_or_else(|| format!("@odata.context '{context}' is not a $metadata URL"))?;
    let version = url.rsplit('/').next().unwrap_or_default();
    let version = match version {
        "v1.0" | "beta" | "localtest" => version.to_owned(),
        other => {
            return Err(format!(
                "@odata.context names version '{other}' (expected v1.0, beta or localtest)"
            ))
        }
    };
    let path = fragment.strip_suffix("/$entity").unwrap_or(fragment);
    let target =
        target(path).ok_or_else(|| format!("@odata.context '{context}' names no collection statusd serves"))?;
    if !matches!(body.get("id"), Some(Value::String(s)) if !s.is_empty()) {
        return Err("no \"id\" (an import keeps ids, so a re-run can recognise its records)".into());
    }
    Ok(Entry {
        line,
        version,
        target,
        body,
    })
}

/// `deviceManagement/deviceCompliancePolicies` or
/// `deviceManagement/deviceCompliancePolicies('p1')/userStatuses`.
fn target(path: &str) -> Option<Target> {
    for kind in ParentKind::ALL {
        let collection = format!("{}/{}", kind.root(), kind.collection());
        if path == collection {
            return Some(Target::Parent(kind));
        }
        let Some(rest) = path.strip_prefix(&format!("{collection}('")) else {
            continue;
        };
        let (id, segment) = rest.rsplit_once("')/")?;
        let sk = kind.status_kinds().into_iter().find(|sk| sk.segment() == segment)?;
        return Some(Target::Status(sk, id.replace("''", "'")));
    }
    None
}

/// Creates the entity, or finds it there already.
async fn write(api: &Api, entry: &Entry) -> Result<Outcome, String> {
    let mut body = entry.body.clone();
    body.retain(|k, _| !k.ends_with("@odata.bind"));
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    let (collection, item) = match &entry.target {
        Target::Parent(kind) => (
            api.parents_url(&entry.version, *kind),
            api.parent_url(&entry.version, *kind, &id),
        ),
        Target::Status(sk, parent) => {
            let collection = api.statuses_url(&entry.version, *sk, parent);
            let item = format!("{collection}/{}", super::api::segment(&id));
            (collection, item)
        }
    };
    let body = Value::Object(body);
    let a = api.send(reqwest::Method::POST, &collection, Some(&body)).await?;
    Ok(match a.status {
        201 => Outcome::Created,
        409 => {
            let stored = api.get_ok(&item).await?;
            if same(&body, &stored) {
                Outcome::Unchanged
            } else {
                Outcome::Rejected(format!("a different record with id '{id}' is already stored"))
            }
        }
        404 if matches!(entry.target, Target::Status(..)) => Outcome::NoParent,
        s if s >= 500 => return Err(format!("line {}: the server failed: {}", entry.line, a.error_message())),
        _ => Outcome::Rejected(a.error_message()),
    })
}

/// Whether `stored` holds every property of `input` (annotations and the
/// server's own timestamps and version aside), date-times compared as
/// instants.
fn same(input: &Value, stored: &Value) -> bool {
    let (Some(input), Some(stored)) = (input.as_object(), stored.as_object()) else {
        return false;
    };
    input
        .iter()
        .filter(|(k, _)| !k.starts_with('@') && !k.contains("@odata."))
        .filter(|(k, _)| !crate::model::parent::SERVER_OWNED.contains(&k.as_str()))
        .all(|(k, v)| stored.get(k).is_some_and(|s| equal(v, s)))
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) if x != y => {
            matches!((DateTime::parse(x), DateTime::parse(y)), (Ok(p), Ok(q)) if p == q)
        }
        _ => a == b,
    }
}
