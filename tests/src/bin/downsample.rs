//! Test helper: fleetset's per-series downsampling (`fleetset_core::downsample::Downsampler::
//! select`) on JSON from stdin, for the Python comparison with tsdownsample
//! (`tests/python/tsdownsample_reference.py`, run by `tests/tests/downsampling_reference.rs`).
//!
//! Input: `{"threshold": 60, "ratio": 4, "keep_extremes": false, "series": [{"x": [ms, …],
//! "y": [value, …]}, …]}` (each `x` strictly increasing, `y` finite and as long as `x`).
//! Output: `{"indices": [[i, …], …]}`, the selected indices of each series in order. Exits 2
//! with a message naming the problem on malformed input.

use std::io::Read;

use fleetset_core::downsample::Downsampler;
use serde_json::{json, Value};

fn fail(msg: &str) -> ! {
    eprintln!("downsample: {msg}");
    std::process::exit(2)
}

fn main() {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        fail(&format!("reading stdin: {e}"));
    }
    let input: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| fail(&format!("input is not JSON: {e}")));
    let int = |key: &str| {
        input[key]
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or_else(|| fail(&format!("`{key}` must be a non-negative integer")))
    };
    let ds = Downsampler {
        threshold: int("threshold"),
        ratio: int("ratio"),
        keep_extremes: input["keep_extremes"]
            .as_bool()
            .unwrap_or_else(|| fail("`keep_extremes` must be a boolean")),
    };
    let series = input["series"]
        .as_array()
        .unwrap_or_else(|| fail("`series` must be an array"));
    let mut out = Vec::with_capacity(series.len());
    for (k, s) in series.iter().enumerate() {
        let x: Vec<i64> = s["x"]
            .as_array()
            .unwrap_or_else(|| fail(&format!("series {k}: `x` must be an array")))
            .iter()
            .map(|v| {
                v.as_i64()
                    .unwrap_or_else(|| fail(&format!("series {k}: x values must be integers")))
            })
            .collect();
        let y: Vec<f64> = s["y"]
            .as_array()
            .unwrap_or_else(|| fail(&format!("series {k}: `y` must be an array")))
            .iter()
            .map(|v| {
                v.as_f64()
                    .unwrap_or_else(|| fail(&format!("series {k}: y values must be numbers")))
            })
            .collect();
        if x.len() != y.len() || !x.windows(2).all(|w| w[0] < w[1]) {
            fail(&format!(
                "series {k}: x and y must be as long, x strictly increasing"
            ));
        }
        out.push(ds.select(&x, &y));
    }
    println!("{}", json!({ "indices": out }));
}
