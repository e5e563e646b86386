//! `statusd export`: every parent and status of a running server as JSON
//! lines of Graph-shaped entities — each line exactly what Graph's GET of
//! that entity returns under `/beta` (all properties), with its
//! `@odata.context` naming where it lives
//! (`…/$metadata#deviceManagement/deviceCompliancePolicies('p1')/userStatuses/$entity`),
//! and a device configuration's certificate references as
//! `rootCertificate@odata.bind` / `identityCertificate@odata.bind`. So a
//! file written from a real tenant's Graph responses imports the same way.
//! Parents come before their statuses. Not a snapshot: writes made during
//! the export may or may not be in it (`statusd backup` is for that).

use super::api::{Api, ApiArgs};
use super::progress::Progress;
use crate::model::ParentKind;
use serde_json::{Map, Value};
use std::io::Write;

/// `statusd export` flags.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Where to write the JSON lines (`-`: standard output).
    #[arg(long, default_value = "-")]
    pub out: String,
}

const VERSION: &str = "beta";
const PAGE: usize = 1000;

/// Runs the export.
pub async fn run(args: &ExportArgs) -> Result<(), String> {
    let api = Api::new(&args.api)?;
    let mut out: Box<dyn Write> = if args.out == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&args.out).map_err(|e| format!("cannot create {}: {e}", args.out))?,
        ))
    };
    let mut progress = Progress::new("export", None);
    let metadata = format!("{}/{VERSION}/$metadata#", api.base);
    let (mut parents, mut statuses) = (0u64, 0u64);
    for kind in ParentKind::ALL {
        progress.start(kind.collection());
        let mut next = Some(format!("{}?$top={PAGE}", api.parents_url(VERSION, kind)));
        while let Some(url) = next.take() {
            let page = api.get_ok(&url).await?;
            for entity in page["value"].as_array().cloned().unwrap_or_default() {
                let Some(id) = entity["id"].as_str().map(str::to_owned) else {
                    continue;
                };
                let mut line = Map::new();
                line.insert(
                    "@odata.context".into(),
                    Value::String(format!("{metadata}{}/{}/$entity", kind.root(), kind.collection())),
                );
                line.extend(entity.as_object().cloned().unwrap_or_default());
                if kind.has_certificates() {
                    for nav in ["rootCertificate", "identityCertificate"] {
                        let url = format!("{}/{nav}/$ref", api.parent_url(VERSION, kind, &id));
                        let a = api.send(reqwest::Method::GET, &url, None).await?;
                        if let (200, Some(target)) = (a.status, a.body["@odata.id"].as_str()) {
                            line.insert(format!("{nav}@odata.bind"), Value::String(target.to_owned()));
                        }
                    }
                }
                write_line(&mut out, &line, &args.out)?;
                parents += 1;
                progress.inc(1);
                for sk in kind.status_kinds() {
                    let context = format!(
                        "{metadata}{}/{}('{}')/{}/$entity",
                        kind.root(),
                        kind.collection(),
                        id.replace('\'', "''"),
                        sk.segment()
                    );
                    let mut next = Some(format!("{}?$top={PAGE}", api.statuses_url(VERSION, sk, &id)));
                    while let Some(url) = next.take() {
                        let page = api.get_ok(&url).await?;
                        for status in page["value"].as_array().cloned().unwrap_or_default() {
                            let mut line = Map::new();
                            line.insert("@odata.context".into(), Value::String(context.clone()));
                            line.extend(status.as_object().cloned().unwrap_or_default());
                            write_line(&mut out, &line, &args.out)?;
                            statuses += 1;
                            progress.inc(1);
                        }
                        next = page["@odata.nextLink"].as_str().map(str::to_owned);
                    }
                }
            }
            next = page["@odata.nextLink"].as_str().map(str::to_owned);
        }
    }
    out.flush().map_err(|e| format!("cannot write {}: {e}", args.out))?;
    progress.finish();
    eprintln!(
        "export: {parents} parents and {statuses} statuses written ({} lines)",
        parents + statuses
    );
    Ok(())
}

fn write_line(out: &mut Box<dyn Write>, line: &Map<String, Value>, path: &str) -> Result<(), String> {
    serde_json::to_writer(&mut *out, line)
        .map_err(|e| e.to_string())
        .and_then(|()| out.write_all(b"\n").map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot write {path}: {e}"))
}
