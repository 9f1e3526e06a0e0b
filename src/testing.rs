//! Support for tests of this crate and its integration tests; not part of
//! the product. PostgreSQL tests need `PG_TEST_URL` (set by
//! `scripts/test.sh`) and fail without it: a missing peer is a failure,
//! never a skip.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let base = std::env::var("PG_TEST_URL").unwrap_or_else(|_| {
        panic!(
            "PG_TEST_URL is not set: PostgreSQL tests need a server. \
             Run the suite with `bash scripts/test.sh`, which starts one."
        )
    });
    let mut conn = PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PG_TEST_URL ({base}): {e}"));
    let name = format!("boxtrap_t_{:016x}", rand::random::<u64>());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = conn.close().await;
    match base.rfind('/') {
        Some(i) if i > base.find("://").map(|s| s + 2).unwrap_or(0) => {
            let query = base[i..].find('?').map(|q| &base[i + q..]).unwrap_or("");
            format!("{}/{name}{query}", &base[..i])
        }
        _ => format!("{base}/{name}"),
    }
}
