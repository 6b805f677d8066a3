//! TLS for tests: a self-signed certificate made at run time, and a client
//! that trusts it.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use switchboard::{Secret, TlsConfig};

/// What a TLS client talks over.
pub type TlsClientStream = StreamOwned<ClientConnection, TcpStream>;

/// A fresh certificate for `localhost` and `127.0.0.1`: the server's
/// configuration, and a client configuration that trusts only it.
pub fn certificate() -> (TlsConfig, Arc<ClientConfig>) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).expect("generate a certificate");
    let server = TlsConfig {
        certificate_chain_pem: certified.cert.pem().into_bytes(),
        private_key_pem: Secret::new(certified.signing_key.serialize_pem()),
    };
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(certified.cert.der().to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, Arc::new(client))
}

/// Opens a TLS connection over `tcp` and completes the handshake.
pub fn handshake(config: &Arc<ClientConfig>, tcp: TcpStream) -> io::Result<TlsClientStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let session = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(session, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// A self-signed certificate for `names` marked `CA:TRUE`, as `openssl
/// req -x509` makes them, valid until the start of `not_after` (a year);
/// the server's configuration.
pub fn ca_marked_certificate(names: &[&str], not_after: i32) -> TlsConfig {
    let names = names.iter().map(|name| name.to_string()).collect::<Vec<_>>();
    let mut params = rcgen::CertificateParams::new(names).expect("certificate parameters");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = params.self_signed(&key).expect("a self-signed certificate");
    TlsConfig {
        certificate_chain_pem: cert.pem().into_bytes(),
        private_key_pem: Secret::new(key.serialize_pem()),
    }
}
