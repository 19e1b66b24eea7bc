//! Mutual TLS for peer links: every node presents a certificate signed by the
//! cluster CA and accepts only peers that do. Certificates name the nodes
//! with the DNS name [`PEER_NAME`], since peers are dialled by address.
//! There is no plain mode: a node without configured credentials makes a
//! throwaway set that only it holds (see [`PeerTls::alone`]).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::pki::{self, SECRET_LEN};
use crate::config::PeerTlsConfig;

/// The name every node certificate carries and every peer verifies.
pub const PEER_NAME: &str = "chorus-node";

/// Both sides of the peer links' TLS, and the key that signs gossip.
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    pub gossip_key: [u8; SECRET_LEN],
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {e}"))
}

/// Builds both sides from PEM text: the CA, this node's chain and key.
fn build(
    ca: &[u8],
    chain: &[u8],
    key: &[u8],
    gossip_key: [u8; SECRET_LEN],
) -> Result<PeerTls, String> {
    let mut roots = RootCertStore::empty();
    for ca in certs(ca, "cluster CA")? {
        roots.add(ca).map_err(|e| format!("cluster CA: {e}"))?;
    }
    let chain = certs(chain, "node certificate")?;
    if chain.is_empty() || roots.is_empty() {
        return Err("peer TLS needs a CA and a certificate chain".to_string());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("node key: {e}"))?;
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
        gossip_key,
    })
}

/// Builds the server and client sides from the CA, certificate, key and
/// cluster secret files.
pub fn peer_tls(config: &PeerTlsConfig) -> Result<PeerTls, String> {
    let secret = pki::read_secret(&config.secret_path).map_err(|e| e.to_string())?;
    let ca = read(&config.ca_path)?;
    let chain = read(&config.cert_path)?;
    let key = read(&config.key_path)?;
    build(&ca, &chain, &key, secret).map_err(|e| {
        format!(
            "{e} (ca {}, cert {}, key {})",
            config.ca_path.display(),
            config.cert_path.display(),
            config.key_path.display()
        )
    })
}

impl PeerTls {
    /// Credentials for a node that runs alone: a CA whose key never leaves
    /// this process, so no other process can complete a peer handshake.
    pub fn alone() -> Result<PeerTls, String> {
        let made = pki::ephemeral().map_err(|e| e.to_string())?;
        build(
            made.ca_pem.as_bytes(),
            made.cert_pem.as_bytes(),
            made.key_pem.as_bytes(),
            made.secret,
        )
    }
}
