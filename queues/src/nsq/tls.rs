//! TLS for the TCP protocol: nsqd offers it in IDENTIFY's answer (`tls_v1`), and the client upgrades the
//! same connection. Certificates are always verified: against the web PKI roots, or against the CA file of
//! the URL's `ca=` (for a private CA). There is deliberately no way to turn verification off.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
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
        let mut extra = Vec::new();
        if let Some(ca) = ca {
            let what = format!("CA file {}", ca.display());
            let pem = std::fs::read(ca)
                .map_err(|e| NsqError::Tls(format!("cannot read CA file {}: {e}", ca.display())))?;
            extra = workload::tls::certificates_from_pem(&pem, &what)
                .map_err(|e| NsqError::Tls(e.to_string()))?;
        }
        let what = ca.map_or_else(
            || "TLS".to_string(),
            |ca| format!("CA file {}", ca.display()),
        );
        let config =
            workload::tls::client_config(extra, &what).map_err(|e| NsqError::Tls(e.to_string()))?;
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
