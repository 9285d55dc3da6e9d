//! A folder for logs and config and a fresh database, for tests that run the real
//! binary as separate processes.

use std::net::SocketAddr;
use std::path::Path;

use super::helpers::*;

/// A folder for logs and config, and a fresh database on the chosen backend.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub database: TestDatabase,
}

impl Setup {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(backend, dir.path()).await;
        Self { dir, database }
    }

    /// On a database the test made itself.
    pub fn on(database: TestDatabase) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            database,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.database.scalar(sql).await
    }

    /// Starts `hookrelay COMMAND` on this database; `extra` args are appended.
    pub fn start(
        &self,
        command: &str,
        env: &[(&str, &str)],
        extra: &[&str],
        log: &str,
    ) -> (Process, Option<SocketAddr>) {
        let mut args = vec![command, "--database", &self.database.url];
        let listen;
        let address = if command == "worker" {
            None
        } else {
            let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            listen = address.to_string();
            args.extend(["--listen", &listen]);
            Some(address)
        };
        args.extend(extra);
        (Process::start(&args, self.path(), env, log), address)
    }
}
