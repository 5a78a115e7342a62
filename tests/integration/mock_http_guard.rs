//! The mock's HTTP surface answers local hosts and local (or configured) browser origins
//! only: a foreign `Origin` gets no CORS allowance, a foreign `Host` or `:authority` gets 403,
//! on PD's port (gRPC, gRPC-web, PD's HTTP API, the admin API) and on the stores'.

use tikv_client::proto::pdpb;
use tikv_client::testutils::MockCluster;

use super::util::http;

const VERSION: &str = "/pd/api/v1/version";

/// A CORS preflight for a gRPC-web call from a page of `origin`.
async fn preflight(addr: &str, origin: &str) -> super::util::HttpReply {
    http(
        addr,
        "OPTIONS",
        "/pdpb.PD/GetMembers",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,x-grpc-web"),
        ],
        "",
    )
    .await
}

#[tokio::test]
async fn only_local_and_configured_origins_get_cors() {
    let cluster = MockCluster::builder()
        .allow_origins(["https://app.example:8443"])
        .start()
        .await
        .unwrap();
    let pd = cluster.pd_endpoint();
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1:8000",
        "http://[::1]:3000",
        "https://app.example:8443",
    ] {
        let reply = preflight(&pd, origin).await;
        assert_eq!(reply.status, 200, "{origin}: {reply:?}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(origin),
            "{origin}"
        );
        // A plain request from the page is granted too.
        let reply = http(&pd, "GET", VERSION, &[("Origin", origin)], "").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
    }
    for origin in [
        "https://evil.example",
        "null",
        "http://localhost.evil.example",
        "https://app.example",
    ] {
        let reply = preflight(&pd, origin).await;
        assert_eq!(reply.status, 403, "{origin}: {reply:?}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "{origin}"
        );
        // A simple request the browser would send without a preflight does not run.
        let reply = http(
            &pd,
            "POST",
            "/mock/api/v1/rules",
            &[("Origin", origin)],
            r#"{"lose_reply":true}"#,
        )
        .await;
        assert_eq!(reply.status, 403, "{origin}: {reply:?}");
        assert_eq!(reply.header("access-control-allow-origin"), None);
    }
    let rules = http(&pd, "GET", "/mock/api/v1/rules", &[], "").await;
    assert_eq!(rules.body, "[]", "no rule was added from a foreign page");
    // Without an Origin (curl, native clients) nothing is granted, nor refused.
    let reply = http(&pd, "GET", VERSION, &[], "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn any_origin_is_allowed_only_when_asked_for() {
    let cluster = MockCluster::builder()
        .allow_origins(["*"])
        .start()
        .await
        .unwrap();
    let reply = preflight(&cluster.pd_endpoint(), "https://evil.example").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn foreign_hosts_are_refused_on_every_port() {
    let cluster = MockCluster::builder()
        .stores(1)
        .allow_hosts(["tikv-mock"])
        .start()
        .await
        .unwrap();
    let pd = cluster.pd_endpoint();
    let port = cluster.pd_addr().port();
    for host in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("tikv-mock:{port}"),
    ] {
        let reply = http(&pd, "GET", VERSION, &[("Host", &host)], "").await;
        assert_eq!(reply.status, 200, "{host}: {reply:?}");
    }
    let rebound = format!("evil.example:{port}");
    for path in [VERSION, "/mock/api/v1/rules", "/pdpb.PD/GetMembers"] {
        let reply = http(&pd, "GET", path, &[("Host", &rebound)], "").await;
        assert_eq!(reply.status, 403, "{path}: {reply:?}");
        assert!(reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("evil.example"));
    }
    // gRPC-web to a store, as a page on a rebound name would send it.
    let store = &cluster.store_addrs()[0];
    let reply = http(
        store,
        "POST",
        "/tikvpb.Tikv/RawGet",
        &[
            ("Host", "evil.example"),
            ("Content-Type", "application/grpc-web+proto"),
        ],
        "",
    )
    .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(reply.header("grpc-status"), Some("7"), "PermissionDenied");
}

#[tokio::test]
async fn native_grpc_is_served_by_local_authority_only() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let url = format!("http://{}", cluster.pd_endpoint());
    // tonic sends the endpoint's authority, 127.0.0.1:port.
    let local = tonic::transport::Endpoint::from_shared(url.clone()).unwrap();
    let mut pd = pdpb::pd_client::PdClient::new(local.connect().await.unwrap());
    pd.get_members(pdpb::GetMembersRequest::default())
        .await
        .unwrap();
    let named = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .origin(
            format!("http://localhost:{}", cluster.pd_addr().port())
                .parse()
                .unwrap(),
        );
    let mut pd = pdpb::pd_client::PdClient::new(named.connect().await.unwrap());
    pd.get_members(pdpb::GetMembersRequest::default())
        .await
        .unwrap();
    let foreign = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .origin("http://evil.example:2379".parse().unwrap());
    let mut pd = pdpb::pd_client::PdClient::new(foreign.connect().await.unwrap());
    let status = pd
        .get_members(pdpb::GetMembersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}
