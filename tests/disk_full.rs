//! Disk full: on a small tmpfs the test mounts (as root), writes fail with
//! UNAVAILABLE / 507 before the disk is exhausted, reads keep working, and
//! writes succeed again once space is freed (the tmpfs is grown). Where
//! mounting is impossible the test says so and passes without asserting.

mod common;

use common::{http, TestServer, UserMsg, PARENTS};
use statusd::{Config, Server};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_owned()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let outer = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&outer.path().join("mnt"), "24m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root, or no mount permission)");
        return;
    };
    let mut config = Config::for_data_dir(fs.0.join("data"));
    config.min_free_mb = 8;
    let server = Server::start(config).await.expect("start on the tmpfs");
    let t = TestServer {
        server,
        dir: tempfile::tempdir().unwrap(),
        database_url: None,
    };
    let ch = t.channel().await;
    let api = PARENTS[0];
    api.create(&ch, api.new_parent("p", "disk")).await.unwrap();

    // Fill the disk until the reserve refuses a write.
    let mut created = Vec::new();
    let refusal = loop {
        let msg = UserMsg {
            id: format!("s{:06}", created.len()),
            user_display_name: Some("x".repeat(4000)),
            ..Default::default()
        };
        match api.create_status(&ch, "User", "p", msg).await {
            Ok(s) => created.push(s.id),
            Err(e) => break e,
        }
        assert!(created.len() < 100_000, "the disk never filled");
    };
    assert_eq!(refusal.code(), tonic::Code::Unavailable, "{refusal:?}");
    assert!(refusal.message().contains("free"), "{}", refusal.message());
    let url = format!(
        "{}/v1.0/deviceManagement/deviceCompliancePolicies/p/userStatuses",
        t.base_url()
    );
    let msg = http("POST", &url, Some(r#"{"userDisplayName":"x"}"#))
        .await
        .graph_error(507, "InsufficientStorage");
    assert!(msg.contains("reserve"), "{msg}");

    // Reads keep working, and every acknowledged create is there.
    let got: UserMsg = api.get_status(&ch, "User", "p", &created[0]).await.unwrap();
    assert_eq!(got.id, created[0]);
    assert_eq!(
        http("GET", &format!("{url}/$count"), None).await.text,
        created.len().to_string()
    );

    // Free space: writes resume.
    fs.resize("96m");
    tokio::time::sleep(Duration::from_millis(400)).await;
    api.create_status(
        &ch,
        "User",
        "p",
        UserMsg {
            id: "after".into(),
            ..Default::default()
        },
    )
    .await
    .expect("writes resume");
    eprintln!(
        "disk full: {} creates before the reserve refused writes; recovered after growing the disk",
        created.len()
    );
    let TestServer { server, .. } = t;
    server.shutdown().await.unwrap();
}
