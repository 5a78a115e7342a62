//! TLS for the mock's servers, and throwaway certificates to serve and trust.
//!
//! The mock does the TLS handshake itself (rustls with the ring backend, as tonic's client)
//! rather than through tonic's server TLS, which offers only `h2` by ALPN: offering
//! `http/1.1` as well keeps gRPC-web and PD's HTTP API reachable over HTTPS from clients that
//! speak only HTTP/1.1 (Node's `fetch`, curl `--http1.1`). HTTP/2 clients negotiate `h2`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once on one listener; more connections wait to be accepted.
const CONCURRENT_HANDSHAKES: usize = 64;

/// TLS for a [`MockCluster`](super::MockCluster): the certificate PD and the stores present
/// (with its key, as PEM) and, for mutual TLS, the CA that must have signed the clients'
/// certificates.
#[derive(Clone)]
pub struct MockTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for MockTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockTls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl MockTls {
    /// Serves with this certificate chain and private key (PEM); any client may connect.
    pub fn new(cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        MockTls {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            client_ca_pem: None,
        }
    }

    /// Requires every client to present a certificate signed by this CA (PEM): mutual TLS.
    pub fn require_client_cert(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// The rustls acceptor; `InvalidInput` names what in the PEM material is unusable.
    pub(crate) fn acceptor(&self) -> io::Result<TlsAcceptor> {
        let invalid = |what: &str, e: &dyn fmt::Display| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("mock TLS {what}: {e}"))
        };
        let certs = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("certificate", &e))?;
        let key =
            PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| invalid("private key", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("protocol versions", &e))?;
        let builder = match &self.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca) {
                    let cert = cert.map_err(|e| invalid("client CA", &e))?;
                    roots.add(cert).map_err(|e| invalid("client CA", &e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| invalid("client CA", &e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| invalid("certificate and key", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// A served connection: plain TCP, or TLS over TCP.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// A connection in a simulated network (never TLS).
    #[cfg(feature = "simulation")]
    Sim(turmoil::net::TcpStream),
}

impl Conn {
    pub(crate) fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Conn::Plain(io) => io.connect_info(),
            Conn::Tls(io) => io.get_ref().0.connect_info(),
            #[cfg(feature = "simulation")]
            Conn::Sim(io) => TcpConnectInfo {
                local_addr: io.local_addr().ok(),
                remote_addr: io.peer_addr().ok(),
            },
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            #[cfg(feature = "simulation")]
            Conn::Sim(io) => std::pin::Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_write(cx, buf),
            Conn::Tls(io) => std::pin::Pin::new(io).poll_write(cx, buf),
            #[cfg(feature = "simulation")]
            Conn::Sim(io) => std::pin::Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_flush(cx),
            Conn::Tls(io) => std::pin::Pin::new(io).poll_flush(cx),
            #[cfg(feature = "simulation")]
            Conn::Sim(io) => std::pin::Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            #[cfg(feature = "simulation")]
            Conn::Sim(io) => std::pin::Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// The accepted connections, through a TLS handshake when `tls` is given. A failed handshake
/// is an error item (the server logs it and goes on accepting); handshakes run concurrently,
/// so a slow client does not hold up the others.
pub(crate) fn handshakes<'a>(
    accepted: impl futures::Stream<Item = io::Result<TcpStream>> + Send + 'a,
    tls: Option<TlsAcceptor>,
) -> BoxStream<'a, io::Result<Conn>> {
    let Some(acceptor) = tls else {
        return accepted.map(|tcp| tcp.map(Conn::Plain)).boxed();
    };
    accepted
        .map(move |tcp| {
            let acceptor = acceptor.clone();
            async move {
                let handshake = acceptor.accept(tcp?);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(io) => Ok(Conn::Tls(Box::new(io?))),
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    )),
                }
            }
        })
        .buffer_unordered(CONCURRENT_HANDSHAKES)
        .boxed()
}

/// A throwaway certificate authority with a server certificate for `127.0.0.1` and
/// `localhost` and a client certificate, all as PEM: enough to serve a [`MockCluster`]
/// over TLS or mutual TLS and to trust it (`tikv-mock --tls` writes one out).
///
/// [`MockCluster`]: super::MockCluster
#[derive(Clone)]
#[non_exhaustive]
pub struct TestPki {
    /// The CA certificate clients trust (and, for mutual TLS, the server trusts).
    pub ca_cert_pem: String,
    /// The server certificate, for `127.0.0.1` and `localhost`.
    pub server_cert_pem: String,
    /// The server certificate's private key.
    pub server_key_pem: String,
    /// A client certificate signed by the CA.
    pub client_cert_pem: String,
    /// The client certificate's private key.
    pub client_key_pem: String,
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

/// Where [`TestPki::write_to`] put each PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TestPkiFiles {
    /// The CA certificate (`ca.pem`).
    pub ca_cert: PathBuf,
    /// The server certificate (`server.pem`).
    pub server_cert: PathBuf,
    /// The server's private key (`server-key.pem`).
    pub server_key: PathBuf,
    /// The client certificate (`client.pem`).
    pub client_cert: PathBuf,
    /// The client's private key (`client-key.pem`).
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates a fresh CA, server certificate and client certificate (ECDSA P-256).
    pub fn generate() -> io::Result<TestPki> {
        let failed = |e: rcgen::Error| io::Error::other(format!("generating certificates: {e}"));
        let ca_key = KeyPair::generate().map_err(failed)?;
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tikv-mock test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>,
                    common_name: &str,
                    usage: ExtendedKeyUsagePurpose|
         -> Result<(String, String), rcgen::Error> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(names)?;
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (server_cert_pem, server_key_pem) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "tikv-mock",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
        .map_err(failed)?;
        let (client_cert_pem, client_key_pem) = leaf(
            Vec::new(),
            "tikv-mock client",
            ExtendedKeyUsagePurpose::ClientAuth,
        )
        .map_err(failed)?;
        Ok(TestPki {
            ca_cert_pem: ca_cert.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
        })
    }

    /// TLS with the server certificate; clients need only trust the CA.
    pub fn server_tls(&self) -> MockTls {
        MockTls::new(self.server_cert_pem.clone(), self.server_key_pem.clone())
    }

    /// Mutual TLS: the server certificate, and clients must present a certificate signed
    /// by the CA (such as the client certificate).
    pub fn mutual_tls(&self) -> MockTls {
        self.server_tls()
            .require_client_cert(self.ca_cert_pem.clone())
    }

    /// Writes the PEM files into `dir` (created if missing); private keys are readable by
    /// their owner only.
    pub fn write_to(&self, dir: &Path) -> io::Result<TestPkiFiles> {
        std::fs::create_dir_all(dir)?;
        let files = TestPkiFiles {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        };
        std::fs::write(&files.ca_cert, &self.ca_cert_pem)?;
        std::fs::write(&files.server_cert, &self.server_cert_pem)?;
        std::fs::write(&files.client_cert, &self.client_cert_pem)?;
        write_private(&files.server_key, &self.server_key_pem)?;
        write_private(&files.client_key, &self.client_key_pem)?;
        Ok(files)
    }
}

fn write_private(path: &Path, pem: &str) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_builds_acceptors() {
        let pki = TestPki::generate().unwrap();
        assert!(pki.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        pki.server_tls().acceptor().unwrap();
        let mutual = pki.mutual_tls();
        assert!(mutual.is_mutual());
        mutual.acceptor().unwrap();
    }

    #[test]
    fn unusable_pem_is_an_invalid_input_error() {
        let pki = TestPki::generate().unwrap();
        let Err(err) = MockTls::new(pki.server_cert_pem.clone(), "not a key").acceptor() else {
            panic!("a key that is not PEM was accepted");
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("private key"), "{err}");
        let Err(err) = pki.server_tls().require_client_cert("").acceptor() else {
            panic!("an empty client CA was accepted");
        };
        assert!(err.to_string().contains("client CA"), "{err}");
    }
}
