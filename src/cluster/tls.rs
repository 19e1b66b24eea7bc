//! Mutual TLS for peer links: every node presents a certificate signed by the
//! cluster CA and accepts only peers that do. Certificates name the nodes
//! with the DNS name [`PEER_NAME`], since peers are dialled by address.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::PeerTlsConfig;

/// The name every node certificate carries and every peer verifies.
pub const PEER_NAME: &str = "chorus-node";

/// Both sides of the peer links' TLS.
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

fn load(
    config: &PeerTlsConfig,
) -> Result<
    (
        RootCertStore,
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
    ),
    String,
> {
    let read_certs = |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, String> {
        CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&config.ca_path)? {
        roots
            .add(ca)
            .map_err(|e| format!("{}: {e}", config.ca_path.display()))?;
    }
    let chain = read_certs(&config.cert_path)?;
    if chain.is_empty() || roots.is_empty() {
        return Err("peer TLS needs a CA and a certificate chain".to_string());
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_path)
        .map_err(|e| format!("{}: {e}", config.key_path.display()))?;
    Ok((roots, chain, key))
}

/// Builds the server and client sides from the CA, certificate and key files.
pub fn peer_tls(config: &PeerTlsConfig) -> Result<PeerTls, String> {
    let (roots, chain, key) = load(config)?;
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| e.to_string())?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok(PeerTls {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}
