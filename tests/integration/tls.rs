//! TLS end to end: the mock serving server-only and mutual TLS (raw stubs, gRPC-web and PD's
//! HTTP API over HTTPS), and the clients over it, including every way a TLS setup can be wrong.
//! Certificates are made fresh by each test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tikv_client::pd::PdClient;
use tikv_client::proto::pdpb;
use tikv_client::testutils::{MockCluster, MockTls, TestPki, TestPkiFiles};
use tikv_client::transport::AddressMapper;
use tikv_client::{Config, Error, RawClient, TransactionClient, TransportErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// PEM files in a fresh directory, removed with it.
struct CertDir {
    dir: PathBuf,
    files: TestPkiFiles,
}

impl CertDir {
    fn new(pki: &TestPki, name: &str) -> CertDir {
        let dir = std::env::temp_dir().join(format!("tikv-tls-test-{}-{name}", std::process::id()));
        let files = pki.write_to(&dir).unwrap();
        CertDir { dir, files }
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A mock serving TLS with fresh certificates, and their PEM files.
struct Fixture {
    pki: TestPki,
    certs: CertDir,
    cluster: MockCluster,
}

async fn fixture(name: &str, tls: fn(&TestPki) -> MockTls) -> Fixture {
    let pki = TestPki::generate().unwrap();
    let certs = CertDir::new(&pki, name);
    let cluster = MockCluster::builder().tls(tls(&pki)).start().await.unwrap();
    Fixture {
        pki,
        certs,
        cluster,
    }
}

/// A TLS error that was never sent and is not worth retrying as it is.
fn assert_tls_error(err: &Error, what: &str) -> String {
    match err {
        Error::Transport(t) if t.kind == TransportErrorKind::Tls => {
            assert!(!t.may_have_been_sent, "{what}: {err}");
            assert!(!err.is_retryable(), "{what}: {err}");
            t.message.clone()
        }
        other => panic!("{what}: expected a TLS transport error, got {other:?}"),
    }
}

async fn raw_and_txn_round_trip(cluster: &MockCluster, config: Config) {
    let raw = RawClient::new_with_config(vec![cluster.pd_endpoint()], config.clone())
        .await
        .unwrap();
    raw.put("raw-key", "raw-value").await.unwrap();
    assert_eq!(
        raw.get("raw-key").await.unwrap(),
        Some(b"raw-value".to_vec())
    );
    let client = TransactionClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    let mut txn = client.begin_optimistic().await.unwrap();
    txn.put("txn-key", "txn-value").await.unwrap();
    txn.commit().await.unwrap();
    let reader = client.begin_optimistic().await.unwrap();
    assert_eq!(
        reader.get("txn-key").await.unwrap(),
        Some(b"txn-value".to_vec())
    );
}

#[tokio::test]
async fn raw_and_transactional_clients_work_over_server_only_tls() {
    let Fixture { certs, cluster, .. } = fixture("server-only", TestPki::server_tls).await;
    let config = Config::default().with_tls_ca(&certs.files.ca_cert);
    let pd = PdClient::connect(&[cluster.pd_endpoint()], &config)
        .await
        .unwrap();
    assert_eq!(
        pd.leader().client_urls,
        vec![format!("https://{}", cluster.pd_endpoint())]
    );
    raw_and_txn_round_trip(&cluster, config.clone()).await;

    // A restarted store serves TLS again.
    let store = cluster.store_ids()[0];
    assert!(cluster.stop_store(store));
    // The old listener closes when its server task next runs: retry the bind until then.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = cluster.start_store(store).await {
        assert!(
            Instant::now() < deadline,
            "store {store} cannot restart: {e}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let raw = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    raw.put("after-restart", "v").await.unwrap();
    assert_eq!(raw.get("after-restart").await.unwrap(), Some(b"v".to_vec()));
}

#[tokio::test]
async fn raw_and_transactional_clients_work_over_mutual_tls() {
    let Fixture { certs, cluster, .. } = fixture("mutual", TestPki::mutual_tls).await;
    let config = Config::default().with_security(
        &certs.files.ca_cert,
        &certs.files.client_cert,
        &certs.files.client_key,
    );
    raw_and_txn_round_trip(&cluster, config).await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_promptly_with_a_tls_error() {
    let Fixture { cluster, .. } = fixture("served-ca", TestPki::server_tls).await;
    let other = TestPki::generate().unwrap();
    let certs = CertDir::new(&other, "other-ca");
    let config = Config::default().with_tls_ca(&certs.files.ca_cert);
    let started = Instant::now();
    let err = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap_err();
    let message = assert_tls_error(&err, "untrusted server certificate");
    assert!(message.contains("not trusted"), "{message}");
    // No retry loop: one refused handshake, well inside the PD retry budget (20 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(cluster.calls().is_empty(), "{:?}", cluster.calls());
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_by_a_mutual_tls_mock() {
    let Fixture { certs, cluster, .. } = fixture("no-client-cert", TestPki::mutual_tls).await;
    let config = Config::default().with_tls_ca(&certs.files.ca_cert);
    let err = TransactionClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap_err();
    let message = assert_tls_error(&err, "missing client certificate");
    assert!(message.contains("Config::with_security"), "{message}");
    assert!(cluster.calls().is_empty(), "{:?}", cluster.calls());

    // A certificate from another CA is refused the same way.
    let stranger = TestPki::generate().unwrap();
    let stranger_certs = CertDir::new(&stranger, "stranger-client");
    let config = Config::default().with_security(
        &certs.files.ca_cert,
        &stranger_certs.files.client_cert,
        &stranger_certs.files.client_key,
    );
    let err = PdClient::connect(&[cluster.pd_endpoint()], &config)
        .await
        .unwrap_err();
    assert_tls_error(&err, "client certificate from an untrusted CA");
}

#[tokio::test]
async fn an_http_endpoint_with_tls_configured_is_refused_before_sending() {
    let pki = TestPki::generate().unwrap();
    let certs = CertDir::new(&pki, "http-endpoint");
    let plain = MockCluster::builder().start().await.unwrap();
    let config = Config::default().with_tls_ca(&certs.files.ca_cert);
    let url = format!("http://{}", plain.pd_endpoint());
    let err = RawClient::new_with_config(vec![url.clone()], config)
        .await
        .unwrap_err();
    let message = assert_tls_error(&err, "http:// endpoint with TLS");
    assert!(message.contains("in the clear"), "{message}");
    match &err {
        Error::Transport(t) => assert_eq!(t.address, url),
        other => panic!("{other:?}"),
    }
    assert!(plain.calls().is_empty(), "{:?}", plain.calls());
}

/// Sends PD through the default mapping but maps store addresses to plain `http://`.
#[derive(Debug)]
struct PlainStores {
    pd: String,
}

impl AddressMapper for PlainStores {
    fn map(&self, address: &str, _tls: bool) -> String {
        if address.contains(&self.pd) {
            format!("https://{}", self.pd)
        } else {
            format!("http://{address}")
        }
    }
}

#[tokio::test]
async fn an_address_mapper_producing_http_urls_under_tls_is_refused() {
    let Fixture { certs, cluster, .. } = fixture("mapper", TestPki::server_tls).await;
    let config = Config::default()
        .with_tls_ca(&certs.files.ca_cert)
        .with_address_mapper(PlainStores {
            pd: cluster.pd_endpoint(),
        });
    let raw = RawClient::new_with_config(vec![cluster.pd_endpoint()], config)
        .await
        .unwrap();
    cluster.clear_calls();
    let err = raw.put("k", "v").await.unwrap_err();
    let message = assert_tls_error(&err, "store mapped to http:// under TLS");
    assert!(message.contains("plain http://"), "{message}");
    assert!(
        cluster.calls().iter().all(|c| c.store == 0),
        "a store was called: {:?}",
        cluster.calls()
    );
}

#[tokio::test]
async fn an_https_endpoint_without_tls_configured_is_a_tls_error() {
    let Fixture { cluster, .. } = fixture("https-no-tls", TestPki::server_tls).await;
    let err = PdClient::connect(
        &[format!("https://{}", cluster.pd_endpoint())],
        &Config::default(),
    )
    .await
    .unwrap_err();
    let message = assert_tls_error(&err, "https:// without TLS settings");
    assert!(message.contains("Config::with_tls_ca"), "{message}");
    // A bare address is dialled in plaintext, which a TLS server does not speak.
    let err = PdClient::connect(&[cluster.pd_endpoint()], &Config::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(cluster.calls().is_empty(), "{:?}", cluster.calls());
}

#[tokio::test]
async fn unreadable_tls_files_are_a_tls_error() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let config = Config::default().with_tls_ca("/nonexistent/ca.pem");
    let err = PdClient::connect(&[cluster.pd_endpoint()], &config)
        .await
        .unwrap_err();
    let message = assert_tls_error(&err, "missing CA file");
    assert!(message.contains("/nonexistent/ca.pem"), "{message}");
}

/// A raw TLS client trusting `pki`'s CA and offering only `alpn`.
fn tls_connector(pki: &TestPki, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 exchange over TLS (offering only `http/1.1` by ALPN); the whole response.
async fn https1(pki: &TestPki, addr: &str, request: &[u8]) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tls_connector(pki, &[b"http/1.1"])
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response))
        .await
        .expect("the response ends")
        .unwrap();
    response
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_tls_mock_serves_grpc_stubs_grpc_web_and_http_over_tls() {
    let Fixture { pki, cluster, .. } = fixture("stubs", TestPki::server_tls).await;
    let pd_url = format!("https://{}", cluster.pd_endpoint());

    // gRPC over HTTP/2 with TLS, through a generated stub: PD advertises https:// URLs.
    let channel = tonic::transport::Endpoint::from_shared(pd_url.clone())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&pki.ca_cert_pem)),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let members = pdpb::pd_client::PdClient::new(channel)
        .get_members(pdpb::GetMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.leader.unwrap().client_urls, vec![pd_url.clone()]);

    // gRPC-web over HTTP/1.1 with TLS, as Node's fetch sends it.
    let addr = cluster.pd_endpoint();
    let request = format!(
        "POST /pdpb.PD/GetMembers HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
         Content-Length: 5\r\nConnection: close\r\n\r\n"
    );
    let mut request = request.into_bytes();
    request.extend_from_slice(&[0, 0, 0, 0, 0]);
    let response = https1(&pki, &addr, &request).await;
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(
        contains(&response, b"grpc-status:0"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(contains(&response, pd_url.as_bytes()));

    // PD's HTTP API over HTTPS.
    let request =
        format!("GET /pd/api/v1/version HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = https1(&pki, &addr, request.as_bytes()).await;
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(contains(&response, b"\"version\""));

    // A plaintext stub cannot talk to a TLS store.
    let store_url = format!("http://{}", cluster.store_addrs()[0]);
    let plain = async {
        let channel = tonic::transport::Endpoint::from_shared(store_url)
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        tikv_client::proto::tikvpb::tikv_client::TikvClient::new(channel)
            .raw_get(tikv_client::proto::kvrpcpb::RawGetRequest::default())
            .await
            .map_err(|s| s.to_string())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), plain)
        .await
        .expect("a plaintext call to a TLS store ends");
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(cluster.calls().iter().all(|c| c.method != "RawGet"));
}
