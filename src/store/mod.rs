//! The database: one sqlx `AnyPool` over SQLite (the embedded default, in
//! WAL mode with `synchronous=FULL`, so a commit survives power loss) or
//! PostgreSQL (several `boxtrap serve` nodes sharing one database).
//!
//! Queries are written once in SQL both backends accept (`$1` parameters,
//! `BIGINT` times in microseconds, no backend-specific types) and grouped by
//! aggregate: [`domains`], [`mailboxes`] (with aliases), [`queue`].
//! Migrations live in `migrations/sqlite` and `migrations/postgres`.

pub mod domains;
pub mod held;
pub mod lists;
pub mod mailboxes;
pub mod queue;
pub mod settings;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Why a store operation failed. `Conflict`, `NotFound` and `InUse` are the
/// caller's mistakes and carry a message fit to show; `Database` is ours.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InUse(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("cannot create the database directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
}

// Not `#[from]`: the message already includes the cause, and anyhow would
// print it twice.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

impl StoreError {
    /// Whether a unique constraint refused the write.
    fn is_unique_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects (creating a SQLite file and its directory if needed) and
    /// runs the migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let store = Store::connect(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        install_default_drivers();
        let (backend, url) = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))
        {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(file).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            let url = if path.contains("mode=") {
                format!("sqlite://{path}")
            } else if path.contains('?') {
                format!("sqlite://{path}&mode=rwc")
            } else {
                format!("sqlite://{path}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else {
            (Backend::Postgres, url.to_owned())
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers work beside the one writer;
                        // synchronous=FULL makes every commit durable.
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                             PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Store { pool, backend })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Reads a server-wide setting.
    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores a setting unless one of that name exists; returns the stored value.
    /// Two nodes starting at once agree on one value.
    pub async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(self
            .setting(name)
            .await?
            .unwrap_or_else(|| value.to_owned()))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Opens a fresh store on each backend for tests. PostgreSQL tests need
    //! `PG_TEST_URL` (set by `scripts/test.sh`); without it they fail.
    use super::*;

    pub struct TestDb {
        pub store: Store,
        _dir: Option<tempfile::TempDir>,
    }

    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        TestDb {
            store: Store::open(&url, 4).await.unwrap(),
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> TestDb {
        let url = crate::testing::fresh_postgres_database().await;
        TestDb {
            store: Store::open(&url, 4).await.unwrap(),
            _dir: None,
        }
    }

    /// Runs a store test body against both backends.
    #[macro_export]
    macro_rules! both_backends {
        ($name:ident, $body:expr) => {
            mod $name {
                use super::*;
                #[tokio::test]
                async fn sqlite() {
                    let db = $crate::store::testing::sqlite().await;
                    ($body)(db.store.clone()).await;
                }
                #[tokio::test]
                async fn postgres() {
                    let db = $crate::store::testing::postgres().await;
                    ($body)(db.store.clone()).await;
                }
            }
        };
    }
}
