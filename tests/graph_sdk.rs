//! The official Microsoft Graph Python SDKs (msgraph-sdk for v1.0,
//! msgraph-beta-sdk for beta), unchanged, against the real server: create,
//! list with paging, get, patch, delete, and their error type carrying our
//! code and message. The script is `tests/interop/graph_sdk.py`.

mod common;
#[path = "common/tools.rs"]
mod tools;

use common::TestServer;
use std::process::Command;

/// Runs `tests/interop/<script>` with the venv's Python against `base`;
/// it must exit 0 and print "OK".
async fn run_script(venv: std::path::PathBuf, script: &str, base: String) {
    let script = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(venv.join("bin/python"))
            .arg(script)
            .arg(base)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(out.status.success(), "the script failed:\n{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l == "OK"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_graph_python_sdks_work_unchanged() {
    if tools::skip_interop() {
        return;
    }
    let t = TestServer::start().await;
    run_script(tools::graph_sdks(), "graph_sdk.py", t.base_url()).await;
}

/// msgraph-core's batch helpers, unchanged: `BatchRequestContent` built from
/// the SDK's request builders, `depends_on` chains, `client.batch.post`, and
/// `BatchResponseContent` reading the answers. The script is
/// `tests/interop/graph_batch.py`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_batch_helpers_work_unchanged() {
    if tools::skip_interop() {
        return;
    }
    let t = TestServer::start().await;
    run_script(tools::graph_sdks_with_batch(), "graph_batch.py", t.base_url()).await;
}
