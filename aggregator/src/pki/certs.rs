//! Certificates of `pki` (rcgen, ECDSA P-256): the fleet CA, the server certificate and agents'
//! client certificates carrying their identity as a SPIFFE URI SAN.

use anyhow::{Context, Result};
use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::Path;

/// Subject common name of the fleet CA (`issue-agent` rebuilds the issuer from it and the key).
const CA_NAME: &str = "fleetset CA";

/// A certificate and its private key, PEM.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// The CA: its PEM files and signing key.
pub struct Ca {
    /// `ca.pem`.
    pub cert_pem: String,
    /// `ca.key`.
    pub key_pem: String,
    key: KeyPair,
}

/// The identity an agent's client certificate carries as a URI SAN:
/// `spiffe://fleetset/agent/<agent_id>`.
pub fn spiffe_id(agent_id: &str) -> String {
    format!("spiffe://fleetset/agent/{agent_id}")
}

/// Validity from today for `years` years (UTC dates).
fn validity(p: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now();
    let (y, m, d) = (
        now.year(),
        u8::try_from(now.month()).unwrap_or(1),
        u8::try_from(now.day()).unwrap_or(1),
    );
    p.not_before = rcgen::date_time_ymd(y, m, d);
    p.not_after = rcgen::date_time_ymd(y.saturating_add(years), m, d.min(28));
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "fleetset");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(CA_NAME);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, 10);
    Ok(p)
}

/// A new self-signed CA, valid 10 years.
pub fn new_ca() -> Result<Ca> {
    let key = KeyPair::generate().context("generating the CA key")?;
    let cert = ca_params()?
        .self_signed(&key)
        .context("self-signing the CA")?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key,
    })
}

/// The CA of `dir` (`ca.pem`, `ca.key` made by `pki init`).
pub fn load_ca(dir: &Path) -> Result<Ca> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let (cert_pem, key_pem) = (read("ca.pem")?, read("ca.key")?);
    let key = KeyPair::from_pem(&key_pem).map_err(|_| {
        anyhow::anyhow!("{} is not a PEM private key", dir.join("ca.key").display())
    })?;
    Ok(Ca {
        cert_pem,
        key_pem,
        key,
    })
}

/// Signs `params` (with a fresh key) by `ca`.
fn sign(ca: &Ca, params: CertificateParams) -> Result<Issued> {
    let key = KeyPair::generate().context("generating a key")?;
    let issuer = Issuer::new(ca_params()?, &ca.key);
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing a certificate")?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The server certificate for `names` and `ips`, valid 1 year, for TLS server authentication.
pub fn server_cert(ca: &Ca, names: &[String], ips: &[IpAddr]) -> Result<Issued> {
    let mut p = CertificateParams::new(names.to_vec())
        .with_context(|| format!("server names {names:?}"))?;
    p.subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    p.distinguished_name = dn(names.first().map_or("fleetset aggregator", |n| n.as_str()));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut p, 1);
    sign(ca, p)
}

/// An agent's client certificate, valid 1 year: subject CN = `agent_id`, URI SAN
/// [`spiffe_id`], for TLS client authentication.
pub fn agent_cert(ca: &Ca, agent_id: &str) -> Result<Issued> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let uri = spiffe_id(agent_id)
        .try_into()
        .with_context(|| format!("agent id {agent_id:?} in a URI"))?;
    p.subject_alt_names = vec![SanType::URI(uri)];
    p.distinguished_name = dn(agent_id);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut p, 1);
    sign(ca, p)
}
