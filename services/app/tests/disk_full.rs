//! A full file storage: the upload is refused with 507 and a message that names the fix,
//! nothing half-written stays behind (no file, no document), and once space is freed the
//! same upload succeeds with no manual step. The storage folder is a real filesystem that
//! fills up: a 1 MiB tmpfs.

use std::path::{Path, PathBuf};
use std::process::Command;

use weknora_testkit::{Pg, Redis, free_port};

mod support;
use support::*;
use weknora_testkit::{Need, require};

/// A tmpfs of `size` mounted on `dir` for as long as it lives.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Tmpfs<'a> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(out.status.success(), "mounting a tmpfs needs root: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

/// The stored files and their sizes.
fn stored(dir: &Path) -> Vec<(PathBuf, u64)> {
    files_under(dir).into_iter().map(|f| (f.clone(), f.metadata().unwrap().len())).collect()
}

#[test]
fn a_full_storage_refuses_the_upload_cleanly_and_recovers_when_space_is_freed() {
    require!(Need::Root, Need::HostPostgres, Need::HostRedis);
    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader();
    let files = tempfile::tempdir().unwrap();
    let _tmpfs = Tmpfs::mount(files.path(), "1m");
    let mut env = app_env(pg.port, &redis.addr(), dr_port, free_port());
    env.push(("ADMIN_API_KEY".into(), ADMIN_KEY.into()));
    env.push(("WEKNORA__STORAGE__LOCAL_PATH".into(), files.path().display().to_string()));
    let (_app, port) = start_app(&env);
    let base = create_kb(port, "full");

    // 600 KiB of text fits once in 1 MiB, not twice.
    let text = |n: u8| -> Vec<u8> { format!("document {n}\n").repeat(600 * 1024 / 11).into_bytes() };
    let (status, _, first) = upload(port, &format!("{base}/knowledge/file"), ADMIN_KEY, "first.txt", &text(1));
    assert_eq!(status, 201, "{first}");
    let first_id = first["data"]["id"].as_str().unwrap().to_string();
    let before = stored(files.path());
    assert_eq!(before.len(), 1, "{before:?}");

    let (status, headers, full) = upload(port, &format!("{base}/knowledge/file"), ADMIN_KEY, "second.txt", &text(2));
    assert_eq!(status, 507, "{full}");
    assert!(headers.to_lowercase().contains("application/json"), "{headers}");
    assert_eq!(full["success"], false);
    assert_eq!(full["error"]["details"]["reason"], "storage_full", "{full}");
    let message = full["error"]["message"].as_str().unwrap();
    assert!(message.contains("full") && message.contains("free space"), "{message}");
    // Nothing half-written: the one file of before, whole, and no second document.
    assert_eq!(stored(files.path()), before, "a partly written file was left behind");
    let (_, _, list) = get(port, &format!("{base}/knowledge"), &[("X-API-Key", ADMIN_KEY)]);
    let names: Vec<&str> =
        list["data"].as_array().unwrap().iter().map(|d| d["file_name"].as_str().unwrap_or("")).collect();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert!(!list.to_string().contains("second.txt"), "{names:?}");

    // Space freed: the same upload now succeeds.
    let (status, _, deleted) =
        support::call(port, "DELETE", &format!("/api/v1/knowledge/{first_id}"), &[("X-API-Key", ADMIN_KEY)], None);
    assert_eq!(status, 200, "{deleted}");
    let (status, _, again) = upload(port, &format!("{base}/knowledge/file"), ADMIN_KEY, "second.txt", &text(2));
    assert_eq!(status, 201, "{again}");
}
