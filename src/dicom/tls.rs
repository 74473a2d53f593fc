//! DICOM over TLS (PS3.15 B.1; IHE ATNA secure node): the rustls configurations for the
//! listener (our certificate, and a client CA when peers must authenticate too) and for
//! outgoing associations (the CA that signs the peer's certificate, and ours when the peer
//! asks for one). TLS 1.2 and 1.3 only; certificates and keys are PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

/// `[dicom.tls]`: the TLS listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsListenerSettings {
    /// Address and port of the TLS listener ("" = no TLS listener), e.g. "0.0.0.0:2762".
    pub listen: String,
    /// Our certificate chain (PEM).
    pub certificate: PathBuf,
    /// Its private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// When set, callers must present a certificate signed by this CA (mutual TLS).
    pub client_ca: PathBuf,
}

impl TlsListenerSettings {
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }
}

/// Why a TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    Verifier(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in the file".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what: "private key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("CA certificate", path)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// The listener's configuration.
pub fn server_config(settings: &TlsListenerSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS)?;
    let builder = if settings.client_ca.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(&settings.client_ca)?),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let config = builder.with_single_cert(
        certificates("certificate", &settings.certificate)?,
        private_key(&settings.private_key)?,
    )?;
    Ok(Arc::new(config))
}

/// An outgoing association's configuration: trust `ca`; present `identity` (certificate,
/// key) when given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, key)) => {
            builder.with_client_auth_cert(certificates("certificate", cert)?, private_key(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
