//! Driftless's domain: configuration, Heroku Connect mappings, Salesforce → Postgres types, table
//! DDL, schema migration, bookkeeping SQL, poll windows and the database half of write-back.
//!
//! No network and no actors here: the Salesforce client and the sync engine build on this crate. The
//! only I/O is reading config/mapping files and, in [`migrate`], [`state`] and [`writeback`],
//! statements on a `tokio_postgres` client the caller owns.

pub mod cluster;
pub mod config;
pub mod ddl;
pub mod describe;
pub mod dml;
pub mod formula;
pub mod formula_dml;
pub mod fresh_load;
pub mod ident;
pub mod mapping;
pub mod migrate;
pub mod pgerror;
pub mod secret;
pub mod state;
pub mod types;
pub mod window;
pub mod writeback;

pub use config::{Config, ConfigError};
pub use describe::{FieldDescribe, ObjectDescribe};
pub use ident::Ident;
pub use mapping::{Access, Mapping, MappingError, MappingFile, ResolvedMapping};
pub use secret::Secret;
pub use window::Window;
