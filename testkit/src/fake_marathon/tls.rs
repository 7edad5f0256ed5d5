//! https for the fake: a throwaway certificate authority and a certificate for 127.0.0.1 signed by it, made
//! fresh for each fake, so a test can check that the client trusts exactly the CA bundle it is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Shared;

/// The server's TLS configuration and the CA certificate (PEM) that signed it.
pub(crate) fn make() -> (Arc<ServerConfig>, String) {
    let certs = crate::certs::throwaway("fake marathon test CA");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(certs.cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certs.key_der)),
        )
        .expect("TLS server config");
    (Arc::new(config), certs.ca_pem)
}

/// Accepts TCP connections and completes the TLS handshake; failed handshakes (a client that does not
/// trust the CA) are counted as connections and dropped.
pub(crate) struct TlsListener {
    pub(crate) inner: tokio::net::TcpListener,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) shared: Arc<Shared>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            };
            self.shared.connections.fetch_add(1, Ordering::SeqCst);
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
