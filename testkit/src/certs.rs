//! A throwaway certificate authority and a server certificate for 127.0.0.1 (and localhost) signed by it,
//! made fresh for each server, so that a test can check that a client trusts exactly the CA it is given.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The CA's certificate and the server's certificate and key, as PEM and (for rustls) DER.
pub struct ServerCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    /// PKCS #8.
    pub key_der: Vec<u8>,
}

/// A new CA named `ca_name` and a server certificate signed by it.
pub fn throwaway(ca_name: &str) -> ServerCerts {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    ServerCerts {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    }
}

impl ServerCerts {
    /// Writes the three PEM files into `dir` as `{prefix}ca.pem`, `{prefix}cert.pem` and `{prefix}key.pem`;
    /// returns their paths in that order.
    pub fn write(&self, dir: &Path, prefix: &str) -> (PathBuf, PathBuf, PathBuf) {
        let write = |name: &str, pem: &str| {
            let path = dir.join(format!("{prefix}{name}"));
            std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        };
        (
            write("ca.pem", &self.ca_pem),
            write("cert.pem", &self.cert_pem),
            write("key.pem", &self.key_pem),
        )
    }
}
