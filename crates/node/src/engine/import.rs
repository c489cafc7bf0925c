//! `ctl import`: a new mappings file for a running connection.
//!
//! Everything is checked before anything changes: the file must parse and every mapping must
//! resolve against the org's describe, exactly as at startup. Only then is the file written (to
//! a temporary file renamed over the old one, so a crash leaves the old file or the new, never
//! half of one) and the mappings started, restarted or stopped to match it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use driftless_core::mapping::{Mapping, MappingFile};

use super::commands::connection;
use super::launch::start_mapping;
use super::{CmdResult, CommandError, EngineState, Import};
use crate::validate::validate_file;
use crate::NodeError;

/// Object names per kind of change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl ImportOutcome {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// What turns `old` into `new`, mappings matched by object name (case-insensitively, as
/// Salesforce API names are).
pub fn diff(old: &MappingFile, new: &MappingFile) -> ImportOutcome {
    let key = |m: &Mapping| m.object_name.to_ascii_lowercase();
    let before: BTreeMap<String, &Mapping> = old.mappings.iter().map(|m| (key(m), m)).collect();
    let after: BTreeMap<String, &Mapping> = new.mappings.iter().map(|m| (key(m), m)).collect();
    let mut out = ImportOutcome::default();
    for (k, m) in &after {
        match before.get(k) {
            None => out.added.push(m.object_name.clone()),
            Some(o) if o != m => out.changed.push(m.object_name.clone()),
            Some(_) => {}
        }
    }
    for (k, m) in &before {
        if !after.contains_key(k) {
            out.removed.push(m.object_name.clone());
        }
    }
    out
}

/// Writes `text` next to `path` and renames it over `path`.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mappings.json".into());
    let tmp = path.with_file_name(format!(".{name}.import-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub(crate) async fn import(shared: &EngineState, msg: Import) -> CmdResult<ImportOutcome> {
    let mut conns = shared.conns.lock().await;
    let c = connection(&mut conns, &msg.connection)?;
    let text = std::str::from_utf8(&msg.contents)
        .map_err(|e| CommandError::Invalid(format!("import file: not UTF-8 text: {e}")))?;
    let given =
        MappingFile::parse(text).map_err(|e| CommandError::Invalid(format!("import file: {e}")))?;
    let new_file = if msg.replace {
        MappingFile {
            connection: given
                .connection
                .clone()
                .or_else(|| c.file.connection.clone()),
            ..given
        }
    } else {
        let mut merged = c.file.clone();
        merged.merge(given);
        merged
    };
    let outcome = diff(&c.file, &new_file);
    if outcome.is_empty() {
        return Ok(outcome);
    }
    let validated = validate_file(&c.conn, &new_file, "import file")
        .await
        .map_err(|e| match e {
            e @ NodeError::Config { .. } => CommandError::Invalid(e.to_string()),
            other => CommandError::Node(other),
        })?;
    write_atomically(&c.conn.mappings, &new_file.to_json()).map_err(|e| CommandError::Write {
        message: format!("cannot write {}: {e}", c.conn.mappings.display()),
        source: e,
    })?;
    c.file = new_file;
    let connection_name = c.conn.name.clone();
    for object in &outcome.removed {
        if let Some(mut rt) = c.mappings.remove(object) {
            rt.halt().await;
        }
        shared.registry.remove(&connection_name, object);
    }
    let mut result = Ok(());
    for v in validated {
        let object = v.mapping.object_name.clone();
        let restart = outcome.changed.contains(&object);
        if !restart && !outcome.added.contains(&object) {
            continue;
        }
        let running = c
            .mappings
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&object))
            .cloned();
        if let Some(mut old) = running.and_then(|k| c.mappings.remove(&k)) {
            old.halt().await;
        }
        match start_mapping(shared, c, v).await {
            Ok(rt) => {
                c.mappings.insert(object, rt);
            }
            Err(e) => {
                tracing::error!(connection = %connection_name, object, error = %e, "imported mapping did not start");
                result = Err(CommandError::from(e));
                break;
            }
        }
    }
    // Write-back follows the new set of read_write mappings.
    if let Err(e) = c.restart_writeback(&shared.registry).await {
        tracing::error!(connection = %connection_name, error = %e, "write-back did not restart");
        if result.is_ok() {
            result = Err(CommandError::from(e));
        }
    }
    tracing::info!(connection = %connection_name, added = ?outcome.added, changed = ?outcome.changed, removed = ?outcome.removed, "mappings imported");
    shared.publish(&conns);
    result.map(|()| outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> MappingFile {
        MappingFile::parse(json).unwrap()
    }

    const A: &str = r#"{"object_name":"Account","config":{"access":"read_only","sf_notify_enabled":false,"fields":{"Id":{},"Name":{}},"indexes":{}}}"#;
    const A2: &str = r#"{"object_name":"Account","config":{"access":"read_only","sf_notify_enabled":false,"fields":{"Id":{},"Name":{},"Phone":{}},"indexes":{}}}"#;
    const C: &str = r#"{"object_name":"Contact","config":{"access":"read_only","sf_notify_enabled":false,"fields":{"Id":{}},"indexes":{}}}"#;
    const L: &str = r#"{"object_name":"Lead","config":{"access":"read_only","sf_notify_enabled":false,"fields":{"Id":{}},"indexes":{}}}"#;

    #[test]
    fn diff_names_added_changed_and_removed() {
        let old = file(&format!(r#"{{"mappings":[{A},{C}]}}"#));
        let new = file(&format!(r#"{{"mappings":[{A2},{L}]}}"#));
        let d = diff(&old, &new);
        assert_eq!(d.added, vec!["Lead"]);
        assert_eq!(d.changed, vec!["Account"]);
        assert_eq!(d.removed, vec!["Contact"]);
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("driftless-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mappings.json");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the mappings file remains");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
