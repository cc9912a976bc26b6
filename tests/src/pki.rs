//! Certificates for the TLS tests, made with rcgen: a CA, server certificates for
//! `localhost`/`127.0.0.1` with a chosen serial, and agent client certificates with the URI SAN
//! `spiffe://fleetset/agent/<id>`, written as PEM files; and the key material of
//! `fleetset-aggregator pki` itself ([`fleetset_pki`]).

use crate::process::bin;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use std::path::{Path, PathBuf};

/// A test CA.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate's PEM file.
    pub cert_file: PathBuf,
}

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

fn write(path: &Path, text: &str) {
    // Write-then-rename: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let cert_file = dir.join(format!("{name}.pem"));
        write(&cert_file, &issuer.pem());
        TestCa { issuer, cert_file }
    }

    fn issue(&self, mut params: CertificateParams, cert: &Path, key: &Path) -> CertFiles {
        let kp = KeyPair::generate().unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "fleetset test");
        let c = params.signed_by(&kp, &self.issuer).unwrap();
        write(key, &kp.serialize_pem());
        write(cert, &c.pem());
        CertFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1` with serial `serial`, written (each
    /// file replaced atomically) to `dir/server.pem` and `dir/server.key`.
    pub fn server(&self, dir: &Path, serial: u64) -> CertFiles {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.serial_number = Some(serial.into());
        self.issue(params, &dir.join("server.pem"), &dir.join("server.key"))
    }

    /// A client certificate for agent `agent_id` in `dir/agent-<id>.pem` and `.key`.
    pub fn agent(&self, dir: &Path, agent_id: &str) -> CertFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names.push(SanType::URI(
            format!("spiffe://fleetset/agent/{agent_id}")
                .try_into()
                .unwrap(),
        ));
        self.issue(
            params,
            &dir.join(format!("agent-{agent_id}.pem")),
            &dir.join(format!("agent-{agent_id}.key")),
        )
    }
}

/// Runs `fleetset-aggregator pki ARGS…`; its stdout, trimmed. Panics with its stderr when it
/// fails.
pub fn run_pki(args: &[&str]) -> String {
    let out = std::process::Command::new(bin("fleetset-aggregator"))
        .arg("pki")
        .args(args)
        .output()
        .expect("run pki");
    assert!(
        out.status.success(),
        "pki {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("pki prints UTF-8")
        .trim()
        .to_string()
}

/// A valid one-window frame of `agent_id` (seq 1, 60 s from 2023-11-14T22:13:20Z, 10 points
/// of `cpu_percent`), MessagePack, signed with `hmac_key` when given.
pub fn one_window_frame(agent_id: &str, hmac_key: Option<Vec<u8>>) -> fleetset_proto::pb::Frame {
    use fleetset_proto::{seal, Encoding, Point, SealOptions, Snapshot, WindowStats};
    let start = 1_700_000_000_000;
    let pts: Vec<Point> = (0..10)
        .map(|i| Point {
            ts_ms: start + i * 6_000,
            value: i as f64,
        })
        .collect();
    let values: Vec<f64> = pts.iter().map(|p| p.value).collect();
    let mut s = Snapshot {
        agent_id: agent_id.into(),
        seq: 1,
        start,
        end: start + 60_000,
        ..Default::default()
    };
    s.stats.insert(
        "cpu_percent".into(),
        WindowStats::from_values(&values).expect("stats of 10 values"),
    );
    s.data.insert("cpu_percent".into(), pts);
    let opts = SealOptions {
        encoding: Encoding::Msgpack,
        hmac_key,
        ..Default::default()
    };
    seal(&s, &opts).expect("seal")
}

/// `fleetset-aggregator pki init --dir dir/pki` (server certificate for localhost and
/// 127.0.0.1) and `pki issue-agent` for each of `agents`; returns the pki directory.
pub fn fleetset_pki(dir: &Path, agents: &[&str]) -> PathBuf {
    let pki = dir.join("pki");
    let d = pki.to_str().unwrap();
    run_pki(&["init", "--dir", d]);
    for a in agents {
        run_pki(&["issue-agent", "--dir", d, a]);
    }
    pki
}

/// The derived key `pki issue-agent` wrote for `agent_id` (hex).
pub fn issued_hmac_key_hex(pki: &Path, agent_id: &str) -> String {
    std::fs::read_to_string(pki.join("agents").join(agent_id).join("hmac.key"))
        .unwrap()
        .trim()
        .to_string()
}
