//! TLS for the client listeners (rustls, ring provider).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// Loads the certificate chain and key named in the config.
pub fn load_server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_path)
        .map_err(|e| format!("{}: {e}", tls.cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", tls.cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", tls.cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_path)
        .map_err(|e| format!("{}: {e}", tls.key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}
