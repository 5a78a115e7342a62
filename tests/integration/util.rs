//! Helpers shared by the integration tests.

use tikv_client::proto::{kvrpcpb, metapb, pdpb, tikvpb};
use tikv_client::testutils::MockCluster;

pub async fn channel(addr: &str) -> tonic::transport::Channel {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn pd_client(
    cluster: &MockCluster,
) -> pdpb::pd_client::PdClient<tonic::transport::Channel> {
    pdpb::pd_client::PdClient::new(channel(&cluster.pd_endpoint()).await)
}

/// A raw stub for the store with this id.
pub async fn tikv(
    cluster: &MockCluster,
    store: u64,
) -> tikvpb::tikv_client::TikvClient<tonic::transport::Channel> {
    let i = cluster
        .store_ids()
        .iter()
        .position(|s| *s == store)
        .expect("known store");
    tikvpb::tikv_client::TikvClient::new(channel(&cluster.store_addrs()[i]).await)
}

/// The context a correct client sends for a raw key: its region, epoch and leader peer.
pub fn ctx_for(cluster: &MockCluster, key: &[u8]) -> (kvrpcpb::Context, u64) {
    ctx_in(cluster, cluster.region_of_raw_key(key))
}

/// The context and leader store for a transactional key.
pub fn txn_ctx_for(cluster: &MockCluster, key: &[u8]) -> (kvrpcpb::Context, u64) {
    ctx_in(cluster, cluster.region_of_txn_key(key))
}

fn ctx_in(cluster: &MockCluster, region: Option<metapb::Region>) -> (kvrpcpb::Context, u64) {
    let region = region.expect("every key has a region");
    let leader = cluster.leader_of(region.id).unwrap();
    let peer = peer_on(&region, leader);
    (
        kvrpcpb::Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(peer),
            ..Default::default()
        },
        leader,
    )
}

pub fn peer_on(region: &metapb::Region, store: u64) -> metapb::Peer {
    region
        .peers
        .iter()
        .find(|p| p.store_id == store)
        .cloned()
        .unwrap()
}

/// The calls of `method` in the cluster's call log, in order.
pub fn calls_of(cluster: &MockCluster, method: &str) -> Vec<tikv_client::testutils::Call> {
    cluster
        .calls()
        .into_iter()
        .filter(|c| c.method == method)
        .collect()
}

/// An HTTP/1.1 answer.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One plain HTTP/1.1 request, as `curl` would send it, with `Host: addr` unless `headers`
/// name another.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpReply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// Polls `value` until `done` holds of it, failing after 10 s with `what` and the last value.
pub async fn wait_until<T: std::fmt::Debug>(
    what: &str,
    value: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = value();
        if done(&now) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still {now:?} after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
