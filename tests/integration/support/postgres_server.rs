//! A throwaway PostgreSQL server on its own port, for tests that stop and restart it
//! without disturbing any other test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::helpers::free_port;

/// A throwaway PostgreSQL cluster on its own port.
pub struct PrivateCluster {
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The newest installed server's tool: versions compared as numbers (`16` after
/// `9.6`).
fn pg_bin(tool: &str) -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let version = std::fs::read_dir(root)
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .max_by_key(|name| version_key(name))
        .expect("a PostgreSQL version");
    root.join(version).join("bin").join(tool)
}

fn version_key(name: &str) -> Vec<u32> {
    name.split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

#[test]
fn server_versions_order_as_numbers() {
    let mut versions = vec!["9.6", "16", "15", "10"];
    versions.sort_by_key(|v| version_key(v));
    assert_eq!(versions, ["9.6", "10", "15", "16"]);
}

/// PostgreSQL refuses to run as root: run its tools as `postgres` when we are root.
fn as_postgres(tool: &str, args: &[&str]) {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let binary = pg_bin(tool);
    let status = if is_root {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&binary)
            .args(args)
            .status()
    } else {
        Command::new(&binary).args(args).status()
    }
    .expect("PostgreSQL tool runs");
    assert!(status.success(), "{tool} {args:?} failed");
}

impl PrivateCluster {
    pub fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres", &dir.path().display().to_string()])
            .status();
        let _ = Command::new("chmod")
            .args(["755", &dir.path().display().to_string()])
            .status();
        as_postgres(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let cluster = Self {
            data,
            port: free_port(),
            _dir: dir,
        };
        cluster.start();
        cluster
    }

    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log").display().to_string();
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    pub fn stop(&self) {
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.stop());
    }
}
