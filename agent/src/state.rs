//! Persisted agent state in `--state-dir`: `agent_id`, `salt` (process-name hashing) and
//! `next_seq`/`last_window` (so `seq` keeps increasing and no window is sent twice across
//! restarts). Each file is replaced atomically: write `<name>.tmp`, fsync, rename, fsync the
//! directory.

use anyhow::{Context, Result};
use fleetset_core::names::id_component;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The agent's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the state directory.
    pub fn open(dir: &Path) -> Result<StateDir> {
        fs::create_dir_all(dir).with_context(|| format!("creating state dir {}", dir.display()))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    fn read(&self, name: &str) -> Result<Option<String>> {
        let path = self.dir.join(name);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The path of the state file `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Atomically replaces the file `name` with `value`.
    pub fn write(&self, name: &str, value: &str) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(value.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Returns the stored value of `name`, or stores and returns `make()`.
    pub fn get_or_init(&self, name: &str, make: impl FnOnce() -> String) -> Result<String> {
        if let Some(v) = self.read(name)?.filter(|v| !v.is_empty()) {
            return Ok(v);
        }
        let v = make();
        self.write(name, &v)?;
        Ok(v)
    }

    /// Reads an integer state file; `default` when absent. A corrupt file is an error that names it.
    pub fn read_i64(&self, name: &str, default: i64) -> Result<i64> {
        match self.read(name)? {
            None => Ok(default),
            Some(s) => s.parse().with_context(|| {
                format!(
                    "state file {} holds {s:?}, not an integer",
                    self.dir.join(name).display()
                )
            }),
        }
    }
}

/// A new agent id: `<hostname>-<8 random hex>`, so two hosts with one name stay distinct.
pub fn derive_agent_id() -> String {
    let host = sysinfo::System::host_name().unwrap_or_else(|_| "host".into());
    format!(
        "{}-{}",
        id_component(&host, 64),
        hex::encode(rand::random::<[u8; 4]>())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_persist_and_corruption_is_named() {
        let dir = std::env::temp_dir().join(format!("fleetset-state-{}", std::process::id()));
        let s = StateDir::open(&dir).unwrap();
        let id = s.get_or_init("agent_id", derive_agent_id).unwrap();
        assert_eq!(s.get_or_init("agent_id", || "other".into()).unwrap(), id);
        assert_eq!(s.read_i64("next_seq", 1).unwrap(), 1);
        s.write("next_seq", "42").unwrap();
        assert_eq!(
            StateDir::open(&dir)
                .unwrap()
                .read_i64("next_seq", 1)
                .unwrap(),
            42
        );
        s.write("next_seq", "x").unwrap();
        assert!(s
            .read_i64("next_seq", 1)
            .unwrap_err()
            .to_string()
            .contains("next_seq"));
        fs::remove_dir_all(dir).unwrap();
    }
}
