//! A fresh database per test, on either backend, and the few direct reads the tests
//! make of it.

use std::path::Path;

use tokio_postgres::NoTls;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where test databases are created; override with `HOOKRELAY_TEST_POSTGRES`.
fn admin_url() -> String {
    std::env::var("HOOKRELAY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    postgres_name: Option<String>,
}

impl TestDatabase {
    pub async fn create(backend: Backend, dir: &Path) -> Self {
        match backend {
            Backend::Sqlite => Self {
                backend,
                url: format!("sqlite://{}", dir.join("hookrelay.db").display()),
                postgres_name: None,
            },
            Backend::Postgres => {
                let name = format!("hookrelay_test_{}", uuid::Uuid::new_v4().simple());
                let admin = connect(&admin_url()).await;
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database (is PostgreSQL running?)");
                let base = admin_url();
                let url = match base.rsplit_once('/') {
                    Some((server, _)) => format!("{server}/{name}"),
                    None => panic!("HOOKRELAY_TEST_POSTGRES needs a database path"),
                };
                Self {
                    backend,
                    url,
                    postgres_name: Some(name),
                }
            }
        }
    }

    /// A database a test made itself (a server or a disk of its own), left as it is
    /// when dropped.
    pub fn at(backend: Backend, url: String) -> Self {
        Self {
            backend,
            url,
            postgres_name: None,
        }
    }

    pub fn sqlite_path(&self) -> &str {
        self.url.trim_start_matches("sqlite://")
    }

    /// A query returning one integer, written in SQL both backends understand.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path()).unwrap();
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Backend::Postgres => connect(&self.url)
                .await
                .query_one(sql, &[])
                .await
                .unwrap()
                .get(0),
        }
    }

    /// Runs a statement written in SQL both backends understand.
    pub async fn execute(&self, sql: &str) -> Result<u64, String> {
        match self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path()).unwrap();
                conn.execute(sql, [])
                    .map(|n| n as u64)
                    .map_err(|e| e.to_string())
            }
            Backend::Postgres => connect(&self.url)
                .await
                .execute(sql, &[])
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// The stored body and headers of the one event of `source`.
    pub async fn body_and_headers(&self, source: &str) -> (Vec<u8>, String) {
        let sql = "SELECT body, headers FROM events WHERE source = ";
        match self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path()).unwrap();
                conn.query_row(&format!("{sql}?1"), [source], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap()
            }
            Backend::Postgres => {
                let row = connect(&self.url)
                    .await
                    .query_one(&format!("{sql}$1"), &[&source])
                    .await
                    .unwrap();
                (row.get(0), row.get(1))
            }
        }
    }

    /// Holds every write off until the guard is released, as another process holding
    /// the database's locks would.
    pub async fn block_writes(&self) -> WriteBlock {
        match self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path()).unwrap();
                conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
                WriteBlock::Sqlite(conn)
            }
            Backend::Postgres => {
                let client = connect(&self.url).await;
                client
                    .batch_execute(
                        "BEGIN; LOCK TABLE events, hookrelay_meta IN ACCESS EXCLUSIVE MODE",
                    )
                    .await
                    .unwrap();
                WriteBlock::Postgres(client)
            }
        }
    }
}

impl TestDatabase {
    /// Holds inserts into `events` off while other writes pass: a lock on the one
    /// table on PostgreSQL; SQLite locks only whole databases, so there it is
    /// `block_writes`.
    pub async fn block_event_inserts(&self) -> WriteBlock {
        match self.backend {
            Backend::Sqlite => self.block_writes().await,
            Backend::Postgres => {
                let client = connect(&self.url).await;
                client
                    .batch_execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                    .await
                    .unwrap();
                WriteBlock::Postgres(client)
            }
        }
    }
}

pub enum WriteBlock {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl WriteBlock {
    pub async fn release(self) {
        match self {
            Self::Sqlite(conn) => conn.execute_batch("ROLLBACK").unwrap(),
            Self::Postgres(client) => client.batch_execute("ROLLBACK").await.unwrap(),
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop may run inside or outside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Runs each named `async fn(Backend)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::database::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::database::Backend::Postgres).await
                }
            )*
        }
    };
}
