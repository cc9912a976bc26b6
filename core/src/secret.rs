//! Secret files: salts and keys that a process creates once and keeps (the agent's process-name
//! salt, the OTLP identity salt, the export anonymization salt).
//!
//! One rule for all of them: the file holds hex; it is created with `create_new` and mode 0600,
//! written, fsynced, and its directory fsynced, so a crash never leaves a half-written secret
//! and no other user can read it. Two processes racing to create it agree on the first one
//! written. The secret's value never appears in an error.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// The secret in `path` (hex, decoded), or, when the file does not exist, `new_len` fresh random
/// bytes written there first.
///
/// Errors: the file cannot be read or created, is not hex, or holds fewer than `min_len` bytes
/// (each error names the file, never its contents).
pub fn load_or_create(path: &Path, new_len: usize, min_len: usize) -> Result<Vec<u8>> {
    for _ in 0..2 {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let secret = hex::decode(text.trim())
                    .map_err(|_| anyhow::anyhow!("secret file {} is not hex", path.display()))?;
                if secret.len() < min_len {
                    bail!(
                        "secret file {} holds {} bytes; at least {min_len} are needed",
                        path.display(),
                        secret.len()
                    );
                }
                return Ok(secret);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret: Vec<u8> = (0..new_len).map(|_| rand::random::<u8>()).collect();
                match write_private(path, &hex::encode(&secret)) {
                    Ok(()) => return Ok(secret),
                    // Another process created it first: read theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("creating secret file {}", path.display()))
                    }
                }
            }
            Err(e) => {
                return Err(e).with_context(|| format!("reading secret file {}", path.display()))
            }
        }
    }
    bail!(
        "secret file {} appeared and vanished while creating it",
        path.display()
    )
}

/// Replaces `path` (existing or not) with a mode-0600 file holding `text`, atomically: written
/// to `path` + `.tmp` (a stale one from a crash is removed first), fsynced, renamed over `path`,
/// directory fsynced. A crash leaves the old file or the new one, never half of one. For one
/// writer at a time (the `pki` commands).
pub fn replace_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_private(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Creates `path` (it must not exist: else `AlreadyExists`) with mode 0600 holding `text`,
/// fsyncs it and its directory.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path`.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_checked() {
        let dir = std::env::temp_dir().join(format!("fleetset-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.salt");
        let a = load_or_create(&path, 32, 16).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(load_or_create(&path, 32, 16).unwrap(), a);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "zz-not-hex").unwrap();
        let e = load_or_create(&path, 32, 16).unwrap_err().to_string();
        assert!(e.contains("not hex") && !e.contains("zz-not-hex"), "{e}");
        std::fs::write(&path, "abcd").unwrap();
        assert!(load_or_create(&path, 32, 16)
            .unwrap_err()
            .to_string()
            .contains("at least 16"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn replaced_atomically_private_even_after_a_stale_tmp() {
        let dir = std::env::temp_dir().join(format!("fleetset-replace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.txt");
        std::fs::write(&path, "old").unwrap();
        std::fs::write(dir.join("k.txt.tmp"), "stale").unwrap();
        replace_private(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert!(!dir.join("k.txt.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            write_private(&path, "x").unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
