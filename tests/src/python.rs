//! The Python side of the interop tests: the virtualenv's interpreter (pyarrow, DuckDB, pandas,
//! …) and the scripts under `tests/python/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python interpreter with pyarrow, DuckDB and pandas (set by `scripts/test.sh`).
pub fn python() -> PathBuf {
    PathBuf::from(std::env::var("FLEETSET_PYTHON").expect(
        "FLEETSET_PYTHON is not set: run the tests with scripts/test.sh, which creates the virtualenv with pyarrow, DuckDB and pandas",
    ))
}

/// Runs the Python script `tests/python/<name>` with `args` in the test virtualenv; fails the
/// test with its output unless it exits 0; returns its stdout.
pub fn run_python_script(name: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name);
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
