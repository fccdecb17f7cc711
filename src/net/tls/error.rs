//! rustls's errors in words that say what to do next: which flag trusts a CA, which name to use, that
//! the port speaks plain http. Kept apart from the stream because it is pure (an error and a peer's
//! name in, a message out) and grows with every failure users report.

use rustls::CertificateError;

/// What went wrong, in words that say what to do.
pub(super) fn explain(err: &rustls::Error, peer: &str) -> String {
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "the certificate of {peer} is signed by an unknown issuer; trust its CA with --cacert FILE \
                 (or the system's store with --system-roots), or skip verification with --insecure"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let names = match cert {
                    CertificateError::NotValidForNameContext { presented, .. } => {
                        let names: Vec<&str> = presented
                            .iter()
                            .map(|n| {
                                // rustls renders them as `DnsName("a.example")`.
                                n.split_once('"')
                                    .and_then(|(_, rest)| rest.rsplit_once('"'))
                                    .map_or(n.as_str(), |(name, _)| name)
                            })
                            .collect();
                        format!(" (it names {})", names.join(", "))
                    }
                    _ => String::new(),
                };
                format!(
                    "the certificate {peer} presented is not valid for that name{names}; use a name it \
                     lists (with --resolve NAME:PORT:ADDR to reach it), or skip verification with --insecure"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
                "the certificate of {peer} has expired; the server must renew it (--insecure skips the check)"
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                "the certificate of {peer} is not valid yet; check this machine's clock (--insecure skips \
                 the check)"
            ),
            other => format!(
                "the certificate of {peer} was rejected: {other:?}; --insecure skips verification"
            ),
        },
        E::AlertReceived(alert) => format!(
            "{peer} sent TLS alert '{alert:?}' and ended the session; the server refused this client's \
             TLS (versions, ciphers, or a client certificate it requires)"
        ),
        E::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => format!(
            "{peer} did not answer in TLS; is this port serving plain http? (use http:// then)"
        ),
        E::NoApplicationProtocol => format!(
            "{peer} does not speak HTTP/1.1 over TLS (ALPN); ringfetch speaks only HTTP/1.1"
        ),
        other => format!("TLS with {peer} failed: {other}"),
    }
}
