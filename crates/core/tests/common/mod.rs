//! Test helpers: a throwaway database per test, and an Account mapping.

#![allow(dead_code)]

use driftless_core::describe::{FieldDescribe, ObjectDescribe};
use driftless_core::mapping::MappingFile;
use tokio_postgres::{Client, NoTls};

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A fresh database, dropped when the test ends, passed or failed.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("driftless_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let url = admin_url()
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/{name}"))
            .unwrap();
        TestDb { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any async context we can await in; use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = connect(&admin_url()).await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .unwrap();
            });
        })
        .join();
    }
}

pub fn fd(name: &str, t: &str, length: u32) -> FieldDescribe {
    FieldDescribe {
        name: name.into(),
        sf_type: t.into(),
        length,
        ..Default::default()
    }
}

pub fn account_describe() -> ObjectDescribe {
    ObjectDescribe {
        name: "Account".into(),
        fields: vec![
            fd("Id", "id", 18),
            fd("IsDeleted", "boolean", 0),
            fd("SystemModstamp", "datetime", 0),
            fd("Name", "string", 255),
            fd("AnnualRevenue", "currency", 0),
            fd("Industry", "picklist", 40),
            fd("Description", "textarea", 32000),
        ],
    }
}

pub fn mappings(fields: &str, indexes: &str) -> MappingFile {
    MappingFile::parse(&format!(
        r#"{{"mappings":[{{"object_name":"Account","config":{{"access":"read_only",
        "sf_polling_seconds":600,"fields":{{{fields}}},"indexes":{{{indexes}}}}}}}],"version":1}}"#
    ))
    .unwrap()
}
