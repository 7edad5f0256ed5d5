//! One TLS stack for every connection the suite makes: rustls with the *ring* provider.
//!
//! The Azure SDK's reqwest would otherwise bring rustls with aws-lc-rs, a second crypto library whose C build
//! (`aws-lc-sys`) was a whole minute of a cold build. Every reqwest in the build is now 0.13 with
//! `rustls-no-provider`, and reqwest then takes the process's default provider, which this module installs.
//! reqwest *panics* when it builds a client and no default provider is installed, so every path that may
//! build one (ours and the SDK's, such as Entra ID credentials) calls [`ensure_crypto_provider`] first.

use std::sync::{Arc, Once};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a TLS configuration could not be made. The message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: not a PEM certificate bundle ({reason})")]
    BadPem { what: String, reason: String },
    #[error("{what}: the file holds no PEM certificate")]
    NoCertificate { what: String },
    #[error("{what}: {reason}")]
    Rejected { what: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Config(String),
}

/// Installs *ring* as the process's default rustls provider, once. Cheap after the first call.
pub fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means some other code installed a provider first; that one is used, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Parses a PEM bundle into certificates; `what` names its origin in errors (e.g. `--ca-cert`).
///
/// # Errors
/// When the bundle is not PEM or holds no certificate.
pub fn certificates_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadPem {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_string(),
        });
    }
    Ok(certs)
}

/// A verifying client configuration: the web PKI roots (webpki-roots, so a static image needs no OS trust
/// store) plus `extra` (a private CA). There is deliberately no way to turn verification off.
///
/// # Errors
/// When a certificate of `extra` is not a usable trust anchor.
pub fn client_config(
    extra: Vec<CertificateDer<'static>>,
    what: &str,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in extra {
        roots.add(c).map_err(|e| TlsError::Rejected {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A reqwest builder whose https trusts exactly what [`client_config`] trusts.
///
/// # Errors
/// As [`client_config`].
pub fn http_client_builder(
    extra: Vec<CertificateDer<'static>>,
    what: &str,
) -> Result<reqwest::ClientBuilder, TlsError> {
    ensure_crypto_provider();
    let config = client_config(extra, what)?;
    Ok(reqwest::Client::builder().use_preconfigured_tls(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused_with_its_name() {
        let e = certificates_from_pem(b"not pem at all\n", "--ca-cert").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--ca-cert: the file holds no PEM certificate"
        );
    }

    #[test]
    fn a_client_builds_with_the_web_roots_and_verifies() {
        // Building must not panic for want of a provider, and must work twice (the Once).
        for _ in 0..2 {
            let client = http_client_builder(Vec::new(), "test")
                .and_then(|b| b.build().map_err(|e| TlsError::Config(e.to_string())));
            assert!(client.is_ok(), "{:?}", client.err());
        }
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
