//! Key files of `pki`: written 0600 with fsync through `fleetset_core::secret`, never
//! overwritten without `--force`; the CURVE allow file.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// Creates `dir` (mode 0700) and writes every `(name, text)` in it. Without `force`, fails
/// before writing anything if one of the files exists (naming it).
pub fn write_all(dir: &Path, files: &[(&str, String)], force: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    }
    if !force {
        if let Some((name, _)) = files.iter().find(|(n, _)| dir.join(n).exists()) {
            bail!(
                "{} exists; refusing to overwrite key material (use --force)",
                dir.join(name).display()
            );
        }
    }
    for (name, text) in files {
        let path = dir.join(name);
        let written = match force {
            true => fleetset_core::secret::replace_private(&path, text),
            false => fleetset_core::secret::write_private(&path, text),
        };
        written.with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A fresh CURVE key pair as Z85 text `(public, secret)`, or None (with a note on stderr) when
/// the linked libzmq has no CURVE.
pub fn curve_pair() -> Result<Option<(String, String)>> {
    if zmq::has("curve") != Some(true) {
        eprintln!("pki: this libzmq has no CURVE support; no CURVE keys written");
        return Ok(None);
    }
    let pair = zmq::CurveKeyPair::new().context("generating a CURVE key pair")?;
    let z85 = |k: &[u8; 32]| zmq::z85_encode(k).context("Z85-encoding a CURVE key");
    Ok(Some((z85(&pair.public_key)?, z85(&pair.secret_key)?)))
}

/// The fleet master key of `dir/master.key` (hex, at least 32 bytes).
pub fn read_master(dir: &Path) -> Result<Vec<u8>> {
    read_master_file(&dir.join("master.key"))
}

/// Reads a fleet master key file (hex, at least 32 bytes, surrounding whitespace ignored).
/// Errors name the file, never its content.
pub fn read_master_file(path: &Path) -> Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match hex::decode(text.trim()) {
        Ok(k) if k.len() >= 32 => Ok(k),
        _ => bail!("{} is not at least 32 bytes of hex", path.display()),
    }
}

/// Appends `<public> <agent_id>` to `dir/curve_allow.txt` (atomically rewritten). An existing
/// line for `agent_id` is an error, or with `force` replaced.
pub fn allow_curve_key(dir: &Path, public: &str, agent_id: &str, force: bool) -> Result<()> {
    let path = dir.join("curve_allow.txt");
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let is_agent = |l: &str| l.split_whitespace().nth(1) == Some(agent_id);
    if !force && old.lines().any(is_agent) {
        bail!(
            "{} already admits a key for agent {agent_id:?} (use --force to replace it)",
            path.display()
        );
    }
    let mut text: String = old
        .lines()
        .filter(|l| !is_agent(l))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("{public} {agent_id}\n"));
    fleetset_core::secret::replace_private(&path, &text)
        .with_context(|| format!("writing {}", path.display()))
}
