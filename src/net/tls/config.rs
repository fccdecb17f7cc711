//! Configurations, built once per run (and per worker for the client): what the client trusts (the
//! compiled-in webpki roots, `--system-roots`, `--cacert`, or nothing with `--insecure`), its session
//! cache, and the server's certificate (`--tls-cert`/`--tls-key`, or the self-signed one that
//! `crate::config` makes for `--tls-self-signed`). Both sides offer TLS 1.3 and 1.2 and ALPN `http/1.1`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How the client checks servers.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// PEM files of extra roots to trust.
    pub cacert: Option<std::path::PathBuf>,
    pub system_roots: bool,
    pub insecure: bool,
    /// Session resumption off: every connection runs a full handshake.
    pub no_resume: bool,
}

/// Builds the client configuration: roots, ALPN `http/1.1`, TLS 1.2 and 1.3. Errors are usage
/// errors (a missing or empty --cacert file).
pub fn client_config(opts: &ClientOptions) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let mut config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if opts.system_roots {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "--system-roots: no certificates found in the system store ({}); install \
                     ca-certificates or use --cacert FILE",
                    found
                        .errors
                        .first()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "it is empty".into())
                ));
            }
        } else {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if let Some(path) = &opts.cacert {
            let certs = read_certs(path)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "--cacert {}: no usable CA certificate in it",
                    path.display()
                ));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if opts.no_resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(config)
}

/// A worker's own copy of the configuration, with its own session cache: resumption stays within a
/// worker, like its connections (shared-nothing).
pub fn worker_config(base: &rustls::ClientConfig, no_resume: bool) -> Arc<rustls::ClientConfig> {
    let mut config = base.clone();
    if !no_resume {
        config.resumption = rustls::client::Resumption::in_memory_sessions(1024);
    }
    Arc::new(config)
}

/// The PEM certificates in `path`.
pub fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// A server configuration from PEM files (certificate chain, private key).
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the TLS certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(not(feature = "aws-lc"))]
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(feature = "aws-lc")]
fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// `--insecure`: any certificate is accepted, but the handshake signatures are still checked, so the
/// session is at least with whoever holds the key of the certificate it presented.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::PrivateKeyDer;

    use super::*;

    /// A CA and a server certificate for `localhost` that it signed, with the server's key.
    struct Pki {
        ca: CertificateDer<'static>,
        ca_pem: String,
        leaf: CertificateDer<'static>,
        leaf_pem: String,
        key: KeyPair,
    }

    fn pki() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("self-sign the CA");
        let key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("leaf params")
            .signed_by(&key, &ca)
            .expect("sign the leaf");
        Pki {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            leaf: leaf.der().clone(),
            leaf_pem: leaf.pem(),
            key,
        }
    }

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, contents).expect("write the fixture");
        path
    }

    fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(key.serialize_der().into())
    }

    /// Runs a handshake between the two configurations in memory, the client asking for `name`.
    fn handshake(
        client: rustls::ClientConfig,
        server: rustls::ServerConfig,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).expect("server name");
        let mut client = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut server = rustls::ServerConnection::new(Arc::new(server))?;
        let mut wire = Vec::new();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
            wire.clear();
            client.write_tls(&mut wire).expect("write to memory");
            server.read_tls(&mut &wire[..]).expect("read from memory");
            let served = server.process_new_packets().map(|_| ());
            wire.clear();
            // A refusing server still has its alert to send; the client's own error comes first.
            server.write_tls(&mut wire).expect("write to memory");
            client.read_tls(&mut &wire[..]).expect("read from memory");
            client.process_new_packets()?;
            served?;
        }
        panic!("the handshake did not finish in ten round trips");
    }

    #[test]
    fn read_certs_returns_each_certificate_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki();
        let chain = format!("{}{}", pki.leaf_pem, pki.ca_pem);
        let certs = read_certs(&write(dir.path(), "chain.pem", &chain)).expect("read");
        assert_eq!(certs, vec![pki.leaf, pki.ca]);
    }

    #[test]
    fn read_certs_says_what_the_file_lacks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_only = write(dir.path(), "key.pem", &pki().key.serialize_pem());
        let err = read_certs(&key_only).expect_err("a key is not a certificate");
        assert!(err.contains("no PEM certificate"), "{err}");
        assert!(err.contains("key.pem"), "{err}");

        let missing = dir.path().join("missing.pem");
        let err = read_certs(&missing).expect_err("no such file");
        assert!(err.contains("cannot read PEM certificates"), "{err}");
    }

    #[test]
    fn cacert_with_no_parsable_certificate_is_a_usage_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = client_config(&ClientOptions {
            cacert: Some(write(dir.path(), "ca.pem", garbage)),
            ..ClientOptions::default()
        })
        .expect_err("nothing usable to trust");
        assert!(err.starts_with("--cacert "), "{err}");
        assert!(err.contains("no usable CA certificate"), "{err}");
    }

    #[test]
    fn cacert_is_trusted_and_names_are_still_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki();
        let client = client_config(&ClientOptions {
            cacert: Some(write(dir.path(), "ca.pem", &pki.ca_pem)),
            ..ClientOptions::default()
        })
        .expect("client config");
        assert_eq!(client.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let server = server_config(vec![pki.leaf], key_der(&pki.key)).expect("server config");
        assert_eq!(server.alpn_protocols, vec![b"http/1.1".to_vec()]);

        handshake(client.clone(), server.clone(), "localhost").expect("a trusted CA");
        let err = handshake(client, server, "elsewhere.test").expect_err("wrong name");
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(ref e)
                if matches!(e, rustls::CertificateError::NotValidForNameContext { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn builtin_roots_do_not_trust_a_private_ca() {
        let pki = pki();
        let client = client_config(&ClientOptions::default()).expect("client config");
        let server = server_config(vec![pki.leaf], key_der(&pki.key)).expect("server config");
        let err = handshake(client, server, "localhost").expect_err("unknown issuer");
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn insecure_accepts_any_certificate_for_any_name() {
        let pki = pki();
        let client = client_config(&ClientOptions {
            insecure: true,
            ..ClientOptions::default()
        })
        .expect("client config");
        let server = server_config(vec![pki.leaf], key_der(&pki.key)).expect("server config");
        handshake(client, server, "elsewhere.test").expect("--insecure skips verification");

        let verifier = NoVerification(Arc::new(provider()));
        let name = ServerName::try_from("anything.test").expect("name");
        let junk = CertificateDer::from(vec![0u8; 3]);
        assert!(verifier
            .verify_server_cert(&junk, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert!(!verifier.supported_verify_schemes().is_empty());
    }

    #[test]
    fn server_config_refuses_a_key_that_is_not_the_certificates() {
        let pki = pki();
        let other = KeyPair::generate().expect("another key");
        let err = server_config(vec![pki.leaf], key_der(&other)).expect_err("mismatched key");
        assert!(err.contains("do not fit together"), "{err}");
    }

    #[test]
    fn worker_config_keeps_resumption_off_when_asked() {
        let base = client_config(&ClientOptions {
            no_resume: true,
            ..ClientOptions::default()
        })
        .expect("client config");
        let off = format!("{:?}", base.resumption);
        assert_eq!(format!("{:?}", worker_config(&base, true).resumption), off);
        assert_ne!(format!("{:?}", worker_config(&base, false).resumption), off);
    }
}
