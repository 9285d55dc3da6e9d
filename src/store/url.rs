//! Which database: a SQLite file or a PostgreSQL server.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseUrl {
    Sqlite { path: PathBuf },
    Postgres { url: String },
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://data/hookrelay.db".into());
            }
            Ok(Self::Sqlite { path: path.into() })
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Ok(Self::Postgres { url: raw.into() })
        } else {
            Err("expected sqlite://PATH or postgres://…".into())
        }
    }
}

impl fmt::Display for DatabaseUrl {
    /// Never shows a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
            Self::Postgres { url } => {
                let host = url.rsplit('@').next().unwrap_or(url);
                let host = host.trim_start_matches("postgres://");
                let host = host.trim_start_matches("postgresql://");
                write!(f, "postgres://{host}")
            }
        }
    }
}
