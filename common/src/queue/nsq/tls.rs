//! TLS for the TCP protocol: nsqd offers it in IDENTIFY's answer (`tls_v1`), and the client upgrades the
//! same connection. Certificates are always verified: against the web PKI roots, or against the CA file of
//! the URL's `ca=` (for a private CA). There is deliberately no way to turn verification off.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::NsqError;

/// A verified-TLS client configuration, built once per queue.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSettings(verified)")
    }
}

impl TlsSettings {
    /// Trusts the web PKI roots, plus the certificates of `ca` when given.
    ///
    /// # Errors
    /// [`NsqError::Tls`] when the CA file cannot be read or holds no certificate.
    pub fn new(ca: Option<&Path>) -> Result<TlsSettings, NsqError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = ca {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .map_err(|e| NsqError::Tls(format!("cannot read CA file {}: {e}", ca.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| NsqError::Tls(format!("CA file {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(NsqError::Tls(format!(
                    "CA file {} holds no PEM certificate",
                    ca.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| NsqError::Tls(format!("CA file {}: {e}", ca.display())))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| NsqError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsSettings {
            config: Arc::new(config),
        })
    }
}

/// Runs the TLS handshake on an open connection to `addr` (`host:port`; the host is the name checked
/// against the certificate).
///
/// # Errors
/// [`NsqError::Tls`] when the handshake or the certificate check fails.
pub async fn upgrade(
    stream: TcpStream,
    addr: &str,
    settings: &TlsSettings,
) -> Result<TlsStream<TcpStream>, NsqError> {
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(addr)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| NsqError::Tls(format!("{host:?} is not a valid server name: {e}")))?;
    TlsConnector::from(settings.config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| NsqError::Tls(format!("handshake with {addr} failed: {e}")))
}
