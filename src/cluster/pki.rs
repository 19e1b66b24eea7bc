//! The cluster's credentials: a CA that `chorus cluster init-ca` creates,
//! node certificates that `chorus cluster issue-cert` signs with it, the
//! gossip secret created beside the CA, and the throwaway set a node makes
//! for itself when it runs alone.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use blake2::{Blake2b, Digest as _, digest::consts::U32};
use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};

use super::tls::PEER_NAME;

/// The subject of every CA that `init-ca` makes; `issue-cert` signs as it.
const CA_NAME: &str = "Chorus cluster CA";
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const SECRET_FILE: &str = "cluster.secret";
/// Bytes of the gossip secret.
pub const SECRET_LEN: usize = 32;

/// Why cluster credentials could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} exists already: refusing to overwrite cluster credentials")]
    Exists(PathBuf),
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The files of one node's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A node's credentials in memory, as PEM text, plus the gossip secret.
pub struct Credentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub secret: [u8; SECRET_LEN],
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    Ok(params)
}

fn node_params(node: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(vec![PEER_NAME.to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, node.to_string());
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    Ok(params)
}

fn random_secret() -> [u8; SECRET_LEN] {
    let mut secret = [0u8; SECRET_LEN];
    rand::rng().fill_bytes(&mut secret);
    secret
}

/// Makes a CA and a node certificate it signs, in memory, for a node that
/// runs alone: nothing outside this process holds the CA's key, so the peer
/// listener accepts no one else.
pub fn ephemeral() -> Result<Credentials, PkiError> {
    let ca = CertifiedIssuer::self_signed(ca_params()?, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = node_params("alone")?.signed_by(&key, &ca)?;
    Ok(Credentials {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        secret: random_secret(),
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a new file, readable by its owner only when `private`; never
/// replaces an existing one.
fn write_new(path: &Path, contents: &[u8], private: bool) -> Result<(), PkiError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::Exists(path.to_path_buf())
        } else {
            io(path)(e)
        }
    })?;
    file.write_all(contents).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Creates a cluster CA and the gossip secret in `dir`: `ca.pem` (give it to
/// every node), `ca-key.pem` (keep it off the nodes), `cluster.secret`
/// (give it to every node). Refuses to overwrite.
pub fn init_ca(dir: &Path) -> Result<Vec<PathBuf>, PkiError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = [CA_CERT_FILE, CA_KEY_FILE, SECRET_FILE].map(|f| dir.join(f));
    if let Some(existing) = files.iter().find(|f| f.exists()) {
        return Err(PkiError::Exists(existing.clone()));
    }
    let key = KeyPair::generate()?;
    let ca = CertifiedIssuer::self_signed(ca_params()?, key)?;
    let secret = hex(&random_secret());
    write_new(&files[1], ca.key().serialize_pem().as_bytes(), true)?;
    write_new(&files[0], ca.pem().as_bytes(), false)?;
    write_new(&files[2], format!("{secret}\n").as_bytes(), true)?;
    Ok(files.to_vec())
}

/// Signs a certificate for node `name` with the CA in `ca_dir` (made by
/// [`init_ca`]) and writes `{name}.pem` and `{name}-key.pem` into `out`.
pub fn issue_cert(ca_dir: &Path, name: &str, out: &Path) -> Result<NodeFiles, PkiError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(PkiError::Invalid {
            path: out.join(name),
            reason: "a node name is letters, digits, '-', '_' and '.'".to_string(),
        });
    }
    let key_path = ca_dir.join(CA_KEY_FILE);
    let ca_key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| PkiError::Invalid {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    let ca = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let cert = node_params(name)?.signed_by(&key, &ca)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let files = NodeFiles {
        cert: out.join(format!("{name}.pem")),
        key: out.join(format!("{name}-key.pem")),
    };
    if let Some(existing) = [&files.cert, &files.key].into_iter().find(|f| f.exists()) {
        return Err(PkiError::Exists(existing.clone()));
    }
    write_new(&files.key, key.serialize_pem().as_bytes(), true)?;
    write_new(&files.cert, cert.pem().as_bytes(), false)?;
    Ok(files)
}

/// Reads the gossip secret: hex text of at least [`SECRET_LEN`] bytes.
pub fn read_secret(path: &Path) -> Result<[u8; SECRET_LEN], PkiError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let invalid = |reason: &str| PkiError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let text = text.trim();
    if text.len() < 2 * SECRET_LEN || text.len() % 2 != 0 {
        return Err(invalid("the cluster secret must be at least 64 hex digits"));
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("the cluster secret must be hex digits"))?;
    // A longer secret is folded into the key, so every byte of it counts.
    Ok(Blake2b::<U32>::digest(&bytes).into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_ca_refuses_to_overwrite_and_issued_certificates_load() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca).unwrap();
        let err = init_ca(&ca).unwrap_err();
        assert!(matches!(err, PkiError::Exists(_)), "{err}");
        let files = issue_cert(&ca, "node1", dir.path()).unwrap();
        assert!(matches!(
            issue_cert(&ca, "node1", dir.path()),
            Err(PkiError::Exists(_))
        ));
        assert!(matches!(
            issue_cert(&ca, "../x", dir.path()),
            Err(PkiError::Invalid { .. })
        ));
        let config = crate::config::PeerTlsConfig {
            ca_path: ca.join(CA_CERT_FILE),
            cert_path: files.cert,
            key_path: files.key,
            secret_path: ca.join(SECRET_FILE),
        };
        super::super::peer_tls(&config).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(ca.join(CA_KEY_FILE))
                .unwrap()
                .permissions();
            assert_eq!(mode.mode() & 0o077, 0, "the CA key is private");
        }
    }

    #[test]
    fn a_short_or_garbled_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abcd").unwrap();
        assert!(read_secret(&path).is_err());
        std::fs::write(&path, "zz".repeat(32)).unwrap();
        assert!(read_secret(&path).is_err());
        std::fs::write(&path, "ab".repeat(32)).unwrap();
        assert!(read_secret(&path).is_ok());
    }
}
