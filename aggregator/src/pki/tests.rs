use super::*;
use std::path::Path;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fleetset-pki-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn agent_key_matches_the_documented_derivation() {
    // Python: hmac.new(bytes(range(32)), b"fleetset agent key v1" + b"web-01", sha256)
    let master: Vec<u8> = (0..32).collect();
    assert_eq!(
        hex::encode(agent_key(&master, "web-01")),
        "f227789199321359c36259573eefc0498cc0659741d1d0f8b90e09624d226213"
    );
}

#[test]
fn init_is_private_and_never_overwrites() {
    let dir = scratch("init");
    let flags = |force| InitFlags {
        dir: dir.clone(),
        server_names: vec![],
        server_ips: vec![],
        force,
    };
    init(&flags(false)).unwrap();
    for f in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "master.key",
        "curve_allow.txt",
        "tokens.toml",
    ] {
        let p = dir.join(f);
        assert!(p.exists(), "{f}");
        #[cfg(unix)]
        assert_eq!(mode(&p), 0o600, "{f}");
    }
    #[cfg(unix)]
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(read_master(&dir).len(), 32);
    let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let e = init(&flags(false)).unwrap_err().to_string();
    assert!(
        e.contains("refusing to overwrite") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), ca);
    init(&flags(true)).unwrap();
    assert_ne!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), ca);
    std::fs::remove_dir_all(dir).unwrap();
}

fn read_master(dir: &Path) -> Vec<u8> {
    files::read_master(dir).unwrap()
}

#[test]
fn issue_agent_binds_the_identity_and_allows_its_curve_key() {
    let dir = scratch("agent");
    init(&InitFlags {
        dir: dir.clone(),
        server_names: vec!["agg.example".into()],
        server_ips: vec![],
        force: false,
    })
    .unwrap();
    let flags = |id: &str, force| AgentFlags {
        dir: dir.clone(),
        agent_id: id.into(),
        out: None,
        force,
    };
    issue_agent(&flags("web-01", false)).unwrap();
    let out = dir.join("agents/web-01");
    let key = std::fs::read_to_string(out.join("hmac.key")).unwrap();
    assert_eq!(key, hex::encode(agent_key(&read_master(&dir), "web-01")));
    let pem = std::fs::read_to_string(out.join("agent.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    if zmq::has("curve") == Some(true) {
        let public = std::fs::read_to_string(out.join("curve_client.public")).unwrap();
        assert_eq!(public.len(), 40);
        let allow = std::fs::read_to_string(dir.join("curve_allow.txt")).unwrap();
        assert_eq!(allow, format!("{public} web-01\n"));
        let e = issue_agent(&AgentFlags {
            out: Some(dir.join("other")),
            ..flags("web-01", false)
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("already admits"), "{e}");
        issue_agent(&flags("web-02", false)).unwrap();
        let allow = std::fs::read_to_string(dir.join("curve_allow.txt")).unwrap();
        assert_eq!(allow.lines().count(), 2, "{allow}");
    }
    assert!(issue_agent(&flags("../etc", false)).is_err());
    // Chain and SAN, when openssl is there to check them.
    let openssl = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.join("ca.pem"))
        .arg(out.join("agent.pem"))
        .output();
    if let Ok(o) = openssl {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(out.join("agent.pem"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("URI:spiffe://fleetset/agent/web-01"),
            "{text}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn issued_tokens_are_appended_as_digests_keeping_the_file() {
    use crate::security::tokens::{digest_hex, load, Scope};
    let dir = scratch("token");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokens.toml"), "# fleet tokens, edited by hand\n").unwrap();
    let flags = |scope, selector: &[(&str, &str)]| token::TokenFlags {
        dir: dir.clone(),
        scopes: vec![scope],
        selector: selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        name: "t".into(),
        agent_id: None,
    };
    let a = token::add(&flags(Scope::Subscribe, &[("site", "eu-1")])).unwrap();
    let b = token::add(&flags(Scope::Otlp, &[])).unwrap();
    assert!(a.starts_with("fst_") && a.len() == 47 && a != b, "{a} {b}");
    let text = std::fs::read_to_string(dir.join("tokens.toml")).unwrap();
    assert!(
        text.starts_with("# fleet tokens, edited by hand\n"),
        "{text}"
    );
    assert!(!text.contains(&a[4..]) && !text.contains(&b[4..]), "{text}");
    let set = load(&dir.join("tokens.toml"), 1 << 20).unwrap();
    assert_eq!(set.len(), 2);
    let entries: Vec<_> = set.values().map(|e| e.sha256.clone()).collect();
    assert!(entries.contains(&digest_hex(&a)) && entries.contains(&digest_hex(&b)));
    #[cfg(unix)]
    assert_eq!(mode(&dir.join("tokens.toml")), 0o600);
    std::fs::write(dir.join("tokens.toml"), "[[token]]\nsha256 = 1\n").unwrap();
    assert!(token::add(&flags(Scope::Otlp, &[])).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}
