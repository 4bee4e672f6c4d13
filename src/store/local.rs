//! A directory as the store: write to a hidden temporary beside the object, fsync, rename
//! into place, fsync the directory. Readers of the lake (and `list`) skip dot files.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{Object, StoreError};

pub struct Local {
    root: PathBuf,
}

impl Local {
    pub fn new(root: PathBuf) -> Local {
        Local { root }
    }

    pub fn endpoint(&self) -> String {
        format!("file://{}", self.root.display())
    }

    pub fn url(&self, key: &str) -> String {
        format!("file://{}", self.root.join(key).display())
    }

    fn error(&self, op: &'static str, key: &str, e: std::io::Error) -> StoreError {
        let (endpoint, key, error) = (self.endpoint(), key.to_owned(), e.to_string());
        // A full disk or a stale NFS handle can pass later; a permission cannot.
        match e.kind() {
            std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::ReadOnlyFilesystem
            | std::io::ErrorKind::InvalidFilename => StoreError::Rejected {
                endpoint,
                op,
                key,
                error,
            },
            _ => StoreError::Unavailable {
                endpoint,
                op,
                key,
                error,
            },
        }
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let (root, path) = (self.root.clone(), self.root.join(key));
        let result =
            tokio::task::spawn_blocking(move || write_atomically(&root, &path, &body)).await;
        match result {
            Ok(r) => r.map_err(|e| self.error("put", key, e)),
            Err(e) => Err(self.error("put", key, std::io::Error::other(e))),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        tokio::fs::read(self.root.join(key))
            .await
            .map(Bytes::from)
            .map_err(|e| self.error("get", key, e))
    }

    /// The directory exists (or can be made) and takes a file.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let probe = ".freshet-check";
        self.put(probe, Bytes::from_static(b"")).await?;
        tokio::fs::remove_file(self.root.join(probe))
            .await
            .map_err(|e| self.error("put", probe, e))
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        let root = self.root.clone();
        let owned = prefix.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            // The deepest directory the prefix names in full.
            let dir = match owned.rfind('/') {
                Some(i) => root.join(&owned[..i]),
                None => root.clone(),
            };
            walk(&root, &dir, &owned, &mut out)?;
            out.sort_by(|a: &Object, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await;
        match result {
            Ok(r) => r.map_err(|e| self.error("list", prefix, e)),
            Err(e) => Err(self.error("list", prefix, std::io::Error::other(e))),
        }
    }
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<Object>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(root, &path, prefix, out)?;
            continue;
        }
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let key = rel.to_string_lossy().into_owned();
        if key.starts_with(prefix) {
            out.push(Object {
                key,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

fn write_atomically(root: &Path, path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("an object key names no directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("an object key names no file"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(body)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    // The rename is durable only once its directory is, and a directory create_dir_all made
    // only once its parent is: every directory from the object's up to the root.
    for d in dir.ancestors() {
        std::fs::File::open(d)?.sync_all()?;
        if d == root || !d.starts_with(root) {
            break;
        }
    }
    Ok(())
}
