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

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;
    use rustls::{AlertDescription, CertificateError, Error, InvalidMessage};

    use super::explain;

    fn certificate(err: CertificateError) -> String {
        explain(&Error::InvalidCertificate(err), "example.test:443")
    }

    #[test]
    fn unknown_issuer_names_the_flags_that_fix_it() {
        let msg = certificate(CertificateError::UnknownIssuer);
        assert!(
            msg.starts_with("the certificate of example.test:443 "),
            "{msg}"
        );
        for flag in ["--cacert FILE", "--system-roots", "--insecure"] {
            assert!(msg.contains(flag), "{flag} missing: {msg}");
        }
    }

    #[test]
    fn wrong_name_lists_the_names_the_certificate_has() {
        let msg = certificate(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("example.test").expect("name"),
            presented: vec![
                r#"DnsName("a.example")"#.to_string(),
                r#"DnsName("*.b.example")"#.to_string(),
                "IpAddress(192.0.2.1)".to_string(),
            ],
        });
        assert!(
            msg.contains("(it names a.example, *.b.example, IpAddress(192.0.2.1))"),
            "{msg}"
        );
        assert!(msg.contains("--resolve NAME:PORT:ADDR"), "{msg}");

        let bare = certificate(CertificateError::NotValidForName);
        assert!(!bare.contains("it names"), "{bare}");
        assert!(bare.contains("not valid for that name;"), "{bare}");
    }

    #[test]
    fn dates_point_at_the_server_or_at_our_clock() {
        assert!(certificate(CertificateError::Expired).contains("has expired"));
        assert!(certificate(CertificateError::NotValidYet).contains("this machine's clock"));
    }

    #[test]
    fn a_plain_http_port_is_recognised() {
        let msg = explain(
            &Error::InvalidMessage(InvalidMessage::InvalidContentType),
            "127.0.0.1:8080",
        );
        assert_eq!(
            msg,
            "127.0.0.1:8080 did not answer in TLS; is this port serving plain http? (use http:// then)"
        );
    }

    #[test]
    fn alerts_and_the_rest_keep_rustls_words() {
        let alert = explain(
            &Error::AlertReceived(AlertDescription::HandshakeFailure),
            "the client",
        );
        assert!(
            alert.starts_with("the client sent TLS alert 'HandshakeFailure'"),
            "{alert}"
        );
        let other = explain(&Error::DecryptError, "example.test:443");
        assert!(
            other.starts_with("TLS with example.test:443 failed: "),
            "{other}"
        );
    }
}
