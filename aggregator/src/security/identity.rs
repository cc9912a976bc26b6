//! The agent identity of a gRPC peer: the URI SAN `spiffe://fleetset/agent/<agent_id>` of the
//! client certificate verified by mTLS (`security.tls.client_ca_file`). The agent id must follow
//! the contract's charset (`fleetset_proto::contract::is_valid_agent_id`); a certificate with no
//! such SAN, or with more than one, has no identity.

/// The URI SAN prefix naming an agent; the agent id follows it.
pub const AGENT_URI_PREFIX: &str = "spiffe://fleetset/agent/";

/// The agent id the peer of `request` proved with its client certificate (the leaf of the chain
/// rustls verified against the client CA), or `None`: no TLS, no client certificate, or no
/// single valid `spiffe://fleetset/agent/<id>` URI SAN.
pub fn peer_agent_id<T>(request: &tonic::Request<T>) -> Option<String> {
    let certs = request.peer_certs()?;
    agent_id_of(certs.first()?.as_ref())
}

/// The agent id in the URI SANs of a DER certificate (see [`peer_agent_id`]).
pub fn agent_id_of(der: &[u8]) -> Option<String> {
    let mut ids = uri_sans(der)?
        .into_iter()
        .filter_map(|uri| uri.strip_prefix(AGENT_URI_PREFIX).map(str::to_string));
    let id = ids.next()?;
    (ids.next().is_none() && fleetset_proto::contract::is_valid_agent_id(&id)).then_some(id)
}

/// One DER element: (tag, content, rest), or `None` if malformed. Lengths are checked against
/// the input (the certificate already passed rustls' verification, but stay safe anyway).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let (bytes, rest) = b.split_at(n);
        b = rest;
        bytes.iter().try_fold(0usize, |acc, &x| {
            acc.checked_mul(256)?.checked_add(usize::from(x))
        })?
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// The elements of a constructed DER value's content.
fn children(mut b: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (tag, content, rest) = tlv(b)?;
        out.push((tag, content));
        b = rest;
    }
    Some(out)
}

/// The subjectAltName OID 2.5.29.17, DER-encoded.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// The URI SANs (`[6] IA5String`) of a certificate.
fn uri_sans(der: &[u8]) -> Option<Vec<String>> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let (_, exts) = children(tbs)?.into_iter().find(|(tag, _)| *tag == 0xa3)?;
    let (_, exts, _) = tlv(exts)?;
    let mut uris = Vec::new();
    for (_, ext) in children(exts)? {
        let parts = children(ext)?;
        let (Some((0x06, oid)), Some((0x04, value))) = (parts.first(), parts.last()) else {
            continue;
        };
        if *oid != SAN_OID {
            continue;
        }
        let (_, names, _) = tlv(value)?;
        for (tag, name) in children(names)? {
            if tag == 0x86 {
                uris.push(String::from_utf8(name.to_vec()).ok()?);
            }
        }
    }
    Some(uris)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["host.example".to_string()]).unwrap();
        for s in sans {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(s.to_string()).unwrap(),
            ));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_agent_id_comes_from_one_spiffe_uri_san() {
        assert_eq!(
            agent_id_of(&cert(&["spiffe://fleetset/agent/web-01"])).as_deref(),
            Some("web-01")
        );
        assert_eq!(agent_id_of(&cert(&[])), None);
        assert_eq!(agent_id_of(&cert(&["spiffe://other/agent/web-01"])), None);
        assert_eq!(
            agent_id_of(&cert(&[
                "spiffe://fleetset/agent/a",
                "spiffe://fleetset/agent/b"
            ])),
            None
        );
        assert_eq!(
            agent_id_of(&cert(&["spiffe://fleetset/agent/bad id"])),
            None
        );
        assert_eq!(agent_id_of(b"\x30\x05junk"), None);
    }
}
