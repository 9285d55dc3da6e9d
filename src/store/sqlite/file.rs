//! Opening the database file, and telling whether the file at its path is still the
//! one a connection opened.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, MAIN_DB, OpenFlags};

use crate::store::StoreError;

/// How long a statement waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which file a path names: device and inode. A deleted file has none; a replaced
/// one has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    pub fn of(path: &Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|m| Self {
            device: m.dev(),
            inode: m.ino(),
        })
    }
}

/// Idle read connections kept open at most.
const MAX_IDLE_READERS: usize = 8;

/// Opens connections to one database file, and keeps the idle read connections.
/// Shared by the writer and the readers: when the writer finds the file gone or
/// replaced it closes the idle readers at once (so that the old file's WAL is not left
/// behind for a restored file to pick up), and a generation number keeps readers that
/// were busy at that moment from going back into the pool.
#[derive(Clone)]
pub struct Connector {
    path: PathBuf,
    generation: Arc<AtomicU64>,
    idle: Arc<Mutex<Vec<(u64, Connection)>>>,
}

impl Connector {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            generation: Arc::new(AtomicU64::new(0)),
            idle: Arc::default(),
        }
    }

    /// Runs `work` on an idle read connection, or a new one.
    pub fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let (generation, conn) = match pooled {
            Some(pooled) => pooled,
            None => (self.generation(), open_connection(&self.path, false)?),
        };
        let result = work(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
            && generation == self.generation()
        {
            idle.push((generation, conn));
        }
        Ok(result?)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn identity(&self) -> Option<FileIdentity> {
        FileIdentity::of(&self.path)
    }

    /// Opens (and on the first start, creates) the file.
    pub fn create(&self) -> Result<Connection, StoreError> {
        open_connection(&self.path, true)
    }

    /// A connection to the file that is at the path now. Never creates one: a file
    /// that vanished while serving is the operator's to restore, not ours to replace
    /// with an empty one.
    pub fn reopen(&self) -> Result<Connection, StoreError> {
        let conn = open_connection(&self.path, false)?;
        if conn.is_readonly(MAIN_DB)? {
            return Err(StoreError::Unavailable(Box::new(std::io::Error::other(
                format!("{} can only be opened read-only", self.path.display()),
            ))));
        }
        super::schema::check_schema(&conn)?;
        Ok(conn)
    }

    /// Changes whenever the file at the path stopped being the one opened before.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Read connections opened before this call are closed, not used again.
    pub fn invalidate_readers(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let stale = self
            .idle
            .lock()
            .map(|mut idle| std::mem::take(&mut *idle))
            .unwrap_or_default();
        drop(stale);
    }
}

/// After the database file was deleted under a running process, SQLite leaves the old
/// file's `-wal` and `-shm` at the path when the last connection closes. A file
/// restored there later would replay that WAL into itself and be corrupted, so they
/// are renamed aside (kept, not deleted). Only while no database file is at the path:
/// once one is there, its `-wal` may be its own.
pub fn set_aside_orphans(path: &Path) -> Vec<PathBuf> {
    if path.exists() {
        return Vec::new();
    }
    let stamp = crate::domain::time::Timestamp::now().0;
    let mut moved = Vec::new();
    for suffix in ["-wal", "-shm"] {
        let mut orphan = path.as_os_str().to_owned();
        orphan.push(suffix);
        let orphan = PathBuf::from(orphan);
        let mut aside = orphan.as_os_str().to_owned();
        aside.push(format!(".orphaned-{stamp}"));
        if orphan.exists() && std::fs::rename(&orphan, &aside).is_ok() {
            moved.push(PathBuf::from(aside));
        }
    }
    moved
}

pub fn open_connection(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: a commit is on disk, WAL included, before the 202 that depends on it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}
