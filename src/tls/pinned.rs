//! Trust in a certificate the user named, as curl's `--cacert` gives it.
//!
//! The usual self-signed certificate (`openssl req -x509 ...`) is marked
//! `CA:TRUE`, and WebPKI refuses a CA certificate as a server's own
//! (`CaUsedAsEndEntity`), even when that very certificate is the trust
//! anchor. A server that presents exactly a certificate the user gave us
//! is trusted as curl trusts it: the name must still match, and its dates
//! have been checked already (WebPKI checks validity before the basic
//! constraints that refused it). Any other CA certificate in a server's
//! place is refused as of unknown issuer, as curl refuses it; every other
//! verdict is WebPKI's, and handshake signatures are always checked by it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

#[derive(Debug)]
pub(super) struct PinnedOrWebPki {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates the user named, as they were given.
    pinned: Vec<CertificateDer<'static>>,
}

impl PinnedOrWebPki {
    pub(super) fn new(webpki: Arc<WebPkiServerVerifier>, pinned: Vec<CertificateDer<'static>>) -> Self {
        PinnedOrWebPki { webpki, pinned }
    }

    fn is_pinned(&self, cert: &CertificateDer<'_>) -> bool {
        self.pinned.iter().any(|pinned| pinned.as_ref() == cert.as_ref())
    }
}

/// WebPKI's refusal of a CA certificate in a server's place, which rustls
/// passes on as an opaque error.
fn is_ca_used_as_end_entity(error: &rustls::Error) -> bool {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity)
        }
        _ => false,
    }
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(e) if is_ca_used_as_end_entity(&e) && self.is_pinned(end_entity) => {
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            // Not one of ours: no more trusted than any other certificate
            // of unknown issuer, and said the same way.
            Err(e) if is_ca_used_as_end_entity(&e) => {
                Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.webpki.root_hint_subjects()
    }
}
