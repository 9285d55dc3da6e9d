//! The SQLite file taken away under a running process: a 202 is only ever given for
//! a write that a restart will find. SQLite only: PostgreSQL has no file of ours.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::*;
use crate::support::small_disk::SmallDisk;

async fn ready_status(client: &reqwest::Client, address: std::net::SocketAddr) -> u16 {
    client
        .get(format!("http://{address}/ready"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn migrate(database: &str) {
    let status = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["migrate", "--database", database])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_deleted_database_file_refuses_writes_until_one_is_back() {
    let app = TestApp::on(Backend::Sqlite).spawn().await;
    let before = app.accept("s", "before", json!({"n": 0})).await;
    let path = app.database.sqlite_path().to_owned();

    std::fs::remove_file(&path).unwrap();
    for i in 0..20 {
        let refused = app.post("s", Some(&format!("gone-{i}")), &json!({})).await;
        assert_eq!(
            refused.status(),
            503,
            "write {i} after the file was deleted"
        );
        assert_error(&refused.json().await.unwrap(), "storage_unavailable");
    }
    assert_eq!(ready_status(&app.client, app.address).await, 503);
    // The deleted file's WAL is set aside, so that a restored file does not replay it.
    assert!(!Path::new(&format!("{path}-wal")).exists());

    // A usable database is back (here a new, empty one): writes resume.
    migrate(&app.database.url);
    let after = eventually(Duration::from_secs(10), "a 202 again", || async {
        let response = app.post("s", Some("after"), &json!({"n": 1})).await;
        if response.status() != 202 {
            return None;
        }
        let receipt: Value = response.json().await.ok()?;
        receipt["event_id"].as_str().map(str::to_owned)
    })
    .await;
    eventually(Duration::from_secs(10), "ready again", || async {
        (ready_status(&app.client, app.address).await == 200).then_some(())
    })
    .await;

    // Every 202 is found after a restart; what was refused can be sent again.
    let app = TestApp::restart(app.stop().await, &[]).await;
    let found = app
        .client
        .get(app.url(&format!("/events/{after}")))
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    for i in 0..20 {
        let again = app.post("s", Some(&format!("gone-{i}")), &json!({})).await;
        assert_eq!(again.status(), 202);
    }
    // The event acknowledged before the deletion went with the deleted file.
    let lost = app
        .client
        .get(app.url(&format!("/events/{before}")))
        .send()
        .await
        .unwrap();
    assert_eq!(lost.status(), 404);
}

/// A database file replaced by a read-only one is refused (503) until it is made
/// writable, and then used without a restart. Runs the server as an unprivileged
/// user when the tests run as root, since root may write read-only files.
#[tokio::test]
async fn a_read_only_database_file_recovers_once_writable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let binary = dir.path().join("hookrelay");
    std::fs::copy(env!("CARGO_BIN_EXE_hookrelay"), &binary).unwrap();
    let db = dir.path().join("hookrelay.db");
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(&binary);
    command
        .args(["serve", "--listen", &address.to_string()])
        .arg("--database")
        .arg(format!("sqlite://{}", db.display()))
        .current_dir(dir.path())
        .env_clear()
        .envs(FAST.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        command.uid(65534).gid(65534);
    }
    let _server = KillOnDrop(command.spawn().unwrap());
    let client = client();
    wait_healthy(&client, address).await;
    let post = |key: &'static str| {
        let client = client.clone();
        async move { post_json(&client, address, "s", Some(key), &json!({"k": key})).await }
    };
    assert_eq!(post("first").await.status(), 202);

    // A copy that only its owner's root could write, moved over the file in use.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::rename(&copy, &db).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&db, Some(65534), Some(65534)).unwrap();
    }
    for key in ["ro-1", "ro-2"] {
        let refused = post(key).await;
        assert_eq!(refused.status(), 503, "{key}");
    }
    assert_eq!(ready_status(&client, address).await, 503);

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    eventually(Duration::from_secs(10), "writes resume", || async {
        (post("writable").await.status() == 202).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "ready again", || async {
        (ready_status(&client, address).await == 200).then_some(())
    })
    .await;
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The disk fills up under load: webhooks are refused with 503 and never get a 202
/// they cannot keep; once room is made, ingest goes on without a restart and every
/// acknowledged event is there and delivered.
#[tokio::test]
async fn a_full_disk_refuses_then_recovers_without_losing_anything() {
    let disk = SmallDisk::mount("3m");
    // Room to give back later.
    let filler = disk.path.join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024]).unwrap();
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    command
        .args(["serve", "--listen", &address.to_string()])
        .arg("--database")
        .arg(format!(
            "sqlite://{}",
            disk.path.join("hookrelay.db").display()
        ))
        .current_dir(disk.path.parent().unwrap())
        .env_clear()
        .envs(FAST.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = KillOnDrop(command.spawn().unwrap());
    let client = client();
    wait_healthy(&client, address).await;

    let padding = "x".repeat(16 * 1024);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for n in 0..400 {
        let response = post_json(
            &client,
            address,
            "s",
            Some(&format!("full-{n}")),
            &json!({"n": n, "padding": padding}),
        )
        .await;
        match response.status().as_u16() {
            202 => acknowledged.push(
                response.json::<Value>().await.unwrap()["event_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                assert_error(&response.json().await.unwrap(), "storage_unavailable");
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("webhook {n}: {other}"),
        }
    }
    assert!(
        refused >= 5,
        "the disk never filled: {} accepted",
        acknowledged.len()
    );
    assert!(!acknowledged.is_empty());

    // Room again: ingest goes on by itself.
    std::fs::remove_file(&filler).unwrap();
    let after = eventually(Duration::from_secs(20), "a webhook accepted again", || {
        let client = client.clone();
        async move {
            let response = post_json(
                &client,
                address,
                "s",
                Some("after-room"),
                &json!({"n": "after"}),
            )
            .await;
            (response.status() == 202).then_some(())
        }
    });
    after.await;
    for id in &acknowledged {
        wait_for_status(&client, address, id, "delivered", Duration::from_secs(30)).await;
    }
}
