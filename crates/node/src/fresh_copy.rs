//! Records → Postgres binary COPY bytes for the fresh-table load ([`driftless_core::fresh_load`]).
//!
//! The encoding is done here, off the async runtime (the loader calls [`CopyEncoder::encode`]
//! inside `spawn_blocking`), so the DbWriter's session only ships finished bytes: the runtime's
//! one thread moves data while other cores type and encode it.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use driftless_core::fresh_load::copy_columns;
use driftless_core::mapping::ResolvedMapping;
use salesforce::Record;
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::rows::{self, Cell, Row, RowBuilder};

/// `PGCOPY\n\377\r\n\0`, then flags and header-extension length (both 0).
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a field count of -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// What one call of [`CopyEncoder::encode`] produced.
#[derive(Debug, Default)]
pub struct Encoded {
    /// Tuples in COPY BINARY format (no header, no trailer).
    pub bytes: Bytes,
    /// Rows in `bytes`.
    pub rows: usize,
    /// Deleted records: they do not go into the table but leave a tombstone (recorded by the
    /// writer in the same transaction).
    pub deleted: Vec<Row>,
}

pub struct CopyEncoder {
    builder: RowBuilder,
    types: Vec<Type>,
    /// `_hc_lastop` of every row, as the merge sets it.
    synced: Cell,
    /// The largest Id encoded so far (Salesforce order: the first 15 characters).
    pub max_id: Option<String>,
}

impl CopyEncoder {
    pub fn new(mapping: Arc<ResolvedMapping>) -> CopyEncoder {
        let types = copy_columns(&mapping)
            .iter()
            .map(|(_, t)| t.postgres_type())
            .collect();
        CopyEncoder {
            builder: RowBuilder::new(mapping),
            types,
            synced: Cell::Text("SYNCED".to_owned()),
            max_id: None,
        }
    }

    /// Values that did not parse as their column type (stored as null).
    pub fn bad_values(&self) -> u64 {
        self.builder.bad_values
    }

    pub fn encode(&mut self, records: &[Record]) -> Result<Encoded, EncodeError> {
        let mut out = BytesMut::with_capacity(records.len() * 256);
        let mut encoded = Encoded::default();
        for record in records {
            let row = self.builder.build(record);
            let Some(id) = rows::sfid(&row) else { continue };
            if rows::stamp(&row).is_none() {
                // The merge drops these too: a row without a stamp can never be ordered.
                continue;
            }
            let larger = match self.max_id.as_deref() {
                Some(max) => id_key(id) > id_key(max),
                None => true,
            };
            if larger {
                self.max_id = Some(id.to_owned());
            }
            if rows::is_deleted(&row) {
                encoded.deleted.push(row);
                continue;
            }
            self.encode_row(&row, &mut out)?;
            encoded.rows += 1;
        }
        encoded.bytes = out.freeze();
        Ok(encoded)
    }

    fn encode_row(&self, row: &Row, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_i16(self.types.len() as i16);
        for (cell, ty) in row
            .iter()
            .chain(std::iter::once(&self.synced))
            .zip(&self.types)
        {
            let at = out.len();
            out.put_i32(0);
            match cell
                .to_sql(ty, out)
                .map_err(|e| EncodeError(e.to_string()))?
            {
                IsNull::Yes => out[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes()),
                IsNull::No => {
                    let len = i32::try_from(out.len() - at - 4)
                        .map_err(|_| EncodeError("value over 2 GB".into()))?;
                    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
        Ok(())
    }
}

fn id_key(id: &str) -> &str {
    id.get(..15).unwrap_or(id)
}

#[derive(Debug, thiserror::Error)]
#[error("encoding a row for COPY: {0}")]
pub struct EncodeError(pub String);
