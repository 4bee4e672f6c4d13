//! Freshet's own durable state on local disk: small JSON documents kept beside the output
//! (the jsonl file) or in the state directory (Kafka), named `{prefix}.{kind}.json`. Each is
//! replaced atomically (temporary file, fsync, rename, fsync of the directory), so a crash
//! leaves the old document or the new one, never a torn one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {why}")]
pub struct StateError {
    pub path: String,
    pub why: String,
}

/// Where one pipeline's state documents live.
#[derive(Clone, Debug)]
pub struct State {
    prefix: PathBuf,
}

impl State {
    /// State named after `prefix`; its directory is created when missing, so a new install's
    /// state directory needs no preparation (and a directory that cannot be made stops the
    /// start before anything is created on the servers).
    pub fn open(prefix: PathBuf) -> Result<State, StateError> {
        if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StateError {
                path: dir.display().to_string(),
                why: format!("cannot create the directory: {e}"),
            })?;
        }
        Ok(State { prefix })
    }

    /// The path of the `kind` document.
    pub fn path(&self, kind: &str) -> PathBuf {
        let mut name = self.prefix.as_os_str().to_owned();
        name.push(format!(".{kind}.json"));
        PathBuf::from(name)
    }
}

/// The document at `path`, or None when there is none yet.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let err = |why: String| StateError {
        path: path.display().to_string(),
        why,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| err(format!("not a document Freshet wrote: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Replaces the document at `path` atomically and durably.
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let err = |e: std::io::Error| StateError {
        path: path.display().to_string(),
        why: e.to_string(),
    };
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_a_missing_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path().join("new/install/slot")).unwrap();
        let path = state.path("slot");
        assert!(path.ends_with("new/install/slot.slot.json"));
        assert_eq!(read::<Vec<u32>>(&path).unwrap(), None);
        write(&path, &vec![1u32, 2]).unwrap();
        assert_eq!(read::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2]));
        std::fs::write(&path, b"{torn").unwrap();
        let e = read::<Vec<u32>>(&path).unwrap_err();
        assert!(e.to_string().contains("slot.slot.json"), "{e}");
    }
}
