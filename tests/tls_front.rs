//! TLS on loopback for end-to-end tests: a certificate authority and a
//! server certificate made by the test (rcgen), and a TLS front (rustls with
//! the `ring` provider) that terminates TLS on 127.0.0.1 and forwards the
//! bytes to a plain broker port.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed CA named `name`, with a fresh key.
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("generate the CA key");
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, key).expect("self-sign the CA certificate");
        TestCa { issuer }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/file` and returns the path.
    pub fn write_pem(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.pem()).expect("write the CA certificate");
        path
    }

    /// A server certificate signed by this CA for `localhost` and
    /// 127.0.0.1 (the client checks the broker's address against it), with
    /// its key.
    pub fn server_cert(&self) -> ServerCert {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.subject_alt_names = vec![
            rcgen::SanType::DnsName("localhost".try_into().expect("a DNS name")),
            rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("generate the server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the server certificate");
        ServerCert {
            chain: vec![cert.der().clone(), self.issuer.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

/// A server certificate chain and its private key.
#[derive(Debug)]
pub struct ServerCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// Counters of a [`TlsFront`].
#[derive(Debug, Default)]
pub struct FrontStats {
    /// TCP connections accepted.
    pub accepted: AtomicU64,
    /// TLS handshakes completed (and forwarded to the broker).
    pub handshakes: AtomicU64,
    /// TLS handshakes that failed (a client that rejected the certificate,
    /// or one that spoke no TLS).
    pub failed_handshakes: AtomicU64,
}

/// The bound listener of a [`TlsFront`] not serving yet: the broker behind
/// it must advertise the front's address, so the front's port is known
/// before the broker starts.
#[derive(Debug)]
pub struct TlsFrontListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl TlsFrontListener {
    /// Binds 127.0.0.1 on a free port.
    pub async fn bind() -> TlsFrontListener {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the TLS front on 127.0.0.1");
        let addr = listener.local_addr().expect("the front's address");
        TlsFrontListener { listener, addr }
    }

    /// Where the front listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves TLS with `cert`, forwarding each connection to `backend`.
    pub fn serve(self, cert: &ServerCert, backend: SocketAddr) -> TlsFront {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS 1.2 and 1.3 with ring")
            .with_no_client_auth()
            .with_single_cert(
                cert.chain.clone(),
                PrivateKeyDer::Pkcs8(cert.key.clone_key()),
            )
            .expect("a server certificate and its key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let TlsFrontListener { listener, addr } = self;
        let stats = Arc::new(FrontStats::default());
        let s = stats.clone();
        let task = tokio::spawn(async move {
            // Dropped with this task: aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                s.accepted.fetch_add(1, Ordering::Relaxed);
                let (acceptor, s) = (acceptor.clone(), s.clone());
                connections.spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        s.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    s.handshakes.fetch_add(1, Ordering::Relaxed);
                    let Ok(mut plain) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = plain.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront { addr, stats, task }
    }
}

/// A TLS front on 127.0.0.1: terminates TLS with a server certificate and
/// forwards each connection's bytes to a plain broker port. Stops (and drops
/// every connection) when dropped.
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    stats: Arc<FrontStats>,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Where the front listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> &FrontStats {
        &self.stats
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A broker reached only over TLS: a tansu process on a plain loopback port
/// that advertises the TLS front's address, the front, and the CA that
/// signed the front's certificate, written to `ca.pem`.
#[derive(Debug)]
pub struct TlsBroker {
    /// The TLS front, the only address clients are given.
    pub front: TlsFront,
    /// The broker process behind it.
    pub tansu: crate::tansu::Tansu,
    /// The CA that signed the front's certificate.
    pub ca: TestCa,
    /// `ca.pem` in the work directory.
    pub ca_pem: PathBuf,
}

impl TlsBroker {
    /// Makes a CA and a server certificate, binds the front, starts tansu
    /// advertising the front's address (output in `dir`) and serves.
    pub async fn start(dir: &Path) -> TlsBroker {
        let ca = TestCa::new("dispatcher e2e test CA");
        let ca_pem = ca.write_pem(dir, "ca.pem");
        let cert = ca.server_cert();
        let listener = TlsFrontListener::bind().await;
        let advertised = listener.addr().to_string();
        let d = dir.to_owned();
        let tansu =
            tokio::task::spawn_blocking(move || crate::tansu::Tansu::start(&d, Some(&advertised)))
                .await
                .expect("start tansu");
        let front = listener.serve(&cert, tansu.addr);
        TlsBroker {
            front,
            tansu,
            ca,
            ca_pem,
        }
    }

    /// The bootstrap servers: the TLS front.
    pub fn brokers(&self) -> String {
        self.front.addr().to_string()
    }
}

/// A librdkafka client configuration for `brokers` over TLS, trusting the CA
/// in `ca_pem` (the broker's address is checked against its certificate:
/// `ssl.endpoint.identification.algorithm` is librdkafka's default, https).
pub fn tls_client_config(brokers: &str, ca_pem: &Path) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", ca_pem.to_string_lossy())
        .set("ssl.endpoint.identification.algorithm", "https");
    c
}
