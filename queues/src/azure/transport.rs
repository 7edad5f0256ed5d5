//! What the SDK is given to talk with: its HTTP transport (the suite's one reqwest) and, for Entra ID, its
//! token credential.

use std::sync::Arc;
use std::time::Duration;

use azure_core::http::Transport;

use super::EntraKind;

/// The SDK's reqwest transport, built here with the SDK's settings (its timeouts, no redirects) but without
/// automatic decompression: the queue service never compresses its small XML answers, and the decompression
/// layer (and the `accept-encoding` header it adds) cost CPU on every request, on both sides. Its reqwest is
/// the suite's one reqwest, whose rustls runs on ring (workload::tls): the SDK's default features would compile
/// aws-lc too. Certificates are checked against the OS trust store, as the SDK does by default.
///
/// Built here rather than by the SDK's `new_http_client` because that one panics when the client cannot be
/// built, which happens in a container with no CA certificates (a `scratch` base): exit 101 and a backtrace
/// instead of a reason. Here it is a set-up error that says what to install.
pub(super) fn transport() -> Result<Transport, String> {
    // reqwest panics when it builds a client before a provider is installed; Entra ID credentials build
    // their own clients through the SDK, after this.
    workload::tls::ensure_crypto_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            // reqwest's error alone says "builder error"; its source says why (no CA certificates).
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            format!(
                "cannot build the HTTPS client ({why}); the system's CA certificates are needed \
                 (e.g. /etc/ssl/certs/ca-certificates.crt from the ca-certificates package, or SSL_CERT_FILE)"
            )
        })?;
    Ok(Transport::new(Arc::new(client)))
}

pub(super) fn entra_credential(
    kind: EntraKind,
) -> azure_core::Result<Arc<dyn azure_core::credentials::TokenCredential>> {
    Ok(match kind {
        EntraKind::Workload => azure_identity::WorkloadIdentityCredential::new(None)?,
        EntraKind::ManagedIdentity => azure_identity::ManagedIdentityCredential::new(None)?,
        EntraKind::DeveloperTools => azure_identity::DeveloperToolsCredential::new(None)?,
    })
}
