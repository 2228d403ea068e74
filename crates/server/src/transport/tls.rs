//! TLS with rustls on the ring provider: from configured PEM files, or a generated development
//! certificate authority and localhost certificate (`--dev-tls`).
//!
//! The Amplify client always opens `wss://` for the socket, even when its endpoint is `http://`,
//! so the listener accepts both TLS and plain connections on one port (see `server`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

/// `[tls]`: a certificate and key, or a generated development certificate.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Generate a self-signed certificate for localhost and 127.0.0.1 (written under `data_dir`).
    pub dev: bool,
}

impl TlsConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        match (&self.cert, &self.key) {
            (Some(_), None) | (None, Some(_)) => {
                problems.push("tls: give both tls.cert and tls.key, or neither".into())
            }
            (Some(c), Some(k)) => {
                for (key, path) in [("tls.cert", c), ("tls.key", k)] {
                    if !path.exists() {
                        problems.push(format!("{key}: file {} does not exist", path.display()));
                    }
                }
                if self.dev {
                    problems.push("tls.dev: use either a generated development certificate or tls.cert/tls.key, not both".into());
                }
            }
            (None, None) => {}
        }
    }

    /// The acceptor this configuration asks for (`None`: plain HTTP only), and the generated
    /// development files when `dev` is on.
    pub fn acceptor(
        &self,
        data_dir: &Path,
    ) -> Result<(Option<TlsAcceptor>, Option<DevFiles>), TlsError> {
        Ok(match (&self.cert, &self.key, self.dev) {
            (Some(cert), Some(key), _) => (Some(from_files(cert, key)?), None),
            (_, _, true) => {
                let (acceptor, files) = dev(data_dir)?;
                (Some(acceptor), Some(files))
            }
            _ => (None, None),
        })
    }
}

/// TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file {path}: {source}")]
    Cert {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("cannot read private key file {path}: {source}")]
    Key {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("the certificate and key do not form a usable TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write the development certificate under {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Builds an acceptor from PEM files.
pub fn from_files(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: cert.to_owned(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    acceptor(certs, key)
}

fn acceptor(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Where the development certificate files live.
pub struct DevFiles {
    /// The certificate authority clients should trust (`NODE_EXTRA_CA_CERTS=<ca>`).
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DevFiles {
    pub fn under(data_dir: &Path) -> DevFiles {
        let dir = data_dir.join("dev-tls");
        DevFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// Loads the development certificate under `data_dir`, generating it on first use so clients
/// that trust it keep working across restarts.
pub fn dev(data_dir: &Path) -> Result<(TlsAcceptor, DevFiles), TlsError> {
    let files = DevFiles::under(data_dir);
    if !(files.ca.exists() && files.cert.exists() && files.key.exists()) {
        generate(&files)?;
    }
    warn_if_others_can_read(&files.key);
    let acceptor = from_files(&files.cert, &files.key)?;
    Ok((acceptor, files))
}

fn generate(files: &DevFiles) -> Result<(), TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Herald development CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    write(&files.ca, &ca_cert.pem(), FileMode::Public)?;
    // The chain: leaf then CA, so clients that trust the CA can verify.
    let chain = format!("{}{}", leaf_cert.pem(), ca_cert.pem());
    write(&files.cert, &chain, FileMode::Public)?;
    write(&files.key, &leaf_key.serialize_pem(), FileMode::OwnerOnly)?;
    Ok(())
}

/// A key generated by an older version was left readable by everyone; say so rather than
/// change the mode of an existing file behind the operator's back.
fn warn_if_others_can_read(key: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(key)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                key = %key.display(),
                "the development TLS key is readable by other users: chmod 600 it, or delete the dev-tls folder to generate a new one"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = key;
}

/// Who may read a generated file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileMode {
    Public,
    /// The private key: mode 0600 on unix, set when the file is created so it is never readable
    /// by others, not even between a write and a chmod.
    OwnerOnly,
}

fn write(path: &Path, contents: &str, mode: FileMode) -> Result<(), TlsError> {
    use std::io::Write;
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // An existing file keeps its mode when rewritten, so a stale one is removed and the file
    // created anew.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if mode == FileMode::OwnerOnly {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated private key is readable by its owner only; the certificates are public.
    #[cfg(unix)]
    #[test]
    fn the_dev_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = DevFiles::under(dir.path());
        // A key left by an older version, world-readable: regenerating replaces it, mode too.
        std::fs::create_dir_all(files.key.parent().unwrap()).unwrap();
        std::fs::write(&files.key, "old").unwrap();
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        dev(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.cert) & 0o400, 0o400);
    }
}
