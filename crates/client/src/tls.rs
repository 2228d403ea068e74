//! The TLS configuration shared by HTTP publishes and the socket: rustls on ring, trusting the OS
//! store plus any certificate authorities the application adds.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::Error;

/// Parses every certificate of a PEM text (`what` names its origin in errors).
pub(crate) fn pem_certificates(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{what}: not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{what}: no PEM certificate in the file"
        )));
    }
    Ok(certs)
}

/// The configuration for `https`/`wss` (`secure`), or a placeholder one for plain endpoints: the
/// OS store is read only when it will be used.
pub(crate) fn config(
    extra: &[CertificateDer<'static>],
    secure: bool,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    if secure {
        // Unreadable entries in the OS store are skipped: the others still verify servers.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for cert in extra {
            roots
                .add(cert.clone())
                .map_err(|e| Error::Config(format!("unusable CA certificate ({e})")))?;
        }
        if roots.is_empty() {
            return Err(Error::Config(
                "no trusted certificate authorities: the OS store is empty; add a CA".into(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only: the WebSocket upgrade needs it, and reqwest is built without HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
