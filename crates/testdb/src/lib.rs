//! A fresh Postgres database per test, dropped when the test ends (passed or failed: the guard's
//! Drop runs while unwinding). The server comes from `DRIFTLESS_TEST_DATABASE_URL`, default the
//! local one. A leaf crate (it knows nothing of Driftless) so that core, which the rest of the test
//! kit depends on, uses the same one in its own tests.

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// Where test databases are created: `DRIFTLESS_TEST_DATABASE_URL` (a URL to any database of
/// the server, with rights to create databases), default the local server.
pub fn admin_url() -> String {
    std::env::var("DRIFTLESS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `admin_url` with its database replaced by `name` (query parameters kept).
pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let scheme_end = base.find("//").map_or(0, |i| i + 2);
    let server = match base.rfind('/') {
        Some(i) if i >= scheme_end => &base[..i],
        _ => base.as_str(),
    };
    format!("{server}/{name}{query}")
}

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("driftless_test_{}", uuid::Uuid::new_v4().simple());
        let client = connect(&admin_url()).await;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        TestDb {
            url: database_url(&name),
            name,
        }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and may run inside the test's runtime: a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A session to `url`; panics naming the variable to set when nothing answers.
pub async fn connect(url: &str) -> Client {
    connect_with_task(url).await.0
}

/// A session and the task driving its connection: awaiting the task tells when the session ended.
pub async fn connect_with_task(url: &str) -> (Client, JoinHandle<()>) {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("postgres at DRIFTLESS_TEST_DATABASE_URL (default 127.0.0.1:5432): {e}")
        });
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_admin_one() {
        std::env::set_var(
            "DRIFTLESS_TEST_DATABASE_URL",
            "postgres://u@h:5/postgres?sslmode=disable",
        );
        assert_eq!(database_url("x"), "postgres://u@h:5/x?sslmode=disable");
        std::env::set_var("DRIFTLESS_TEST_DATABASE_URL", "postgres://u@h:5");
        assert_eq!(database_url("x"), "postgres://u@h:5/x");
        std::env::remove_var("DRIFTLESS_TEST_DATABASE_URL");
    }
}
