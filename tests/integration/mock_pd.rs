//! The mock PD checked against the spec (section 8) through the raw generated stubs.

use tikv_client::proto::{keyspacepb, metapb, pdpb};
use tikv_client::testutils::{ApiVersion, MockCluster};

use super::util::{channel, http, pd_client};

pub(crate) fn header(cluster: &MockCluster) -> Option<pdpb::RequestHeader> {
    Some(pdpb::RequestHeader {
        cluster_id: cluster.cluster_id(),
        ..Default::default()
    })
}

#[tokio::test]
async fn requests_without_the_cluster_id_are_rejected() {
    let cluster = MockCluster::builder().cluster_id(77).start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    for id in [0, 78] {
        let status = pd
            .get_all_stores(pdpb::GetAllStoresRequest {
                header: Some(pdpb::RequestHeader {
                    cluster_id: id,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            format!("mismatch cluster id, need 77 but got {id}")
        );
    }
}

#[tokio::test]
async fn tso_batches_are_strictly_increasing_and_echo_the_count() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let requests: Vec<pdpb::TsoRequest> = [1u32, 10, 1000, 3]
        .iter()
        .map(|count| pdpb::TsoRequest {
            header: header(&cluster),
            count: *count,
            ..Default::default()
        })
        .collect();
    let mut replies = pd
        .tso(futures::stream::iter(requests.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut last = 0u64;
    for req in &requests {
        let resp = replies.message().await.unwrap().unwrap();
        assert_eq!(resp.count, req.count);
        let ts = resp.timestamp.unwrap();
        assert!(ts.logical < 1 << 18);
        let last_of_batch = ((ts.physical as u64) << 18) | ts.logical as u64;
        let first_of_batch = last_of_batch - u64::from(req.count) + 1;
        assert!(first_of_batch > last, "batches must not overlap");
        last = last_of_batch;
    }
    assert!(
        replies.message().await.unwrap().is_none(),
        "stream ends with the requests"
    );
}

#[tokio::test]
async fn tso_errors_end_the_stream() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let bad = vec![
        pdpb::TsoRequest {
            header: header(&cluster),
            count: 0,
            ..Default::default()
        },
        pdpb::TsoRequest {
            header: header(&cluster),
            count: 1,
            ..Default::default()
        },
    ];
    let mut replies = pd
        .tso(futures::stream::iter(bad))
        .await
        .unwrap()
        .into_inner();
    let status = replies.message().await.unwrap_err();
    assert!(
        status.message().contains("tso count should be positive"),
        "{status:?}"
    );

    let mut replies = pd
        .tso(futures::stream::iter(vec![pdpb::TsoRequest {
            count: 1,
            ..Default::default()
        }]))
        .await
        .unwrap()
        .into_inner();
    let status = replies.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn region_routing() {
    let cluster = MockCluster::builder()
        .split_raw(["b", "m"])
        .start()
        .await
        .unwrap();
    let mut pd = pd_client(&cluster).await;
    let get = |key: &[u8]| pdpb::GetRegionRequest {
        header: header(&cluster),
        region_key: key.to_vec(),
        ..Default::default()
    };
    let resp = pd.get_region(get(b"c")).await.unwrap().into_inner();
    let region = resp.region.unwrap();
    assert_eq!(
        (region.start_key.as_slice(), region.end_key.as_slice()),
        (&b"b"[..], &b"m"[..])
    );
    let leader = resp.leader.unwrap();
    assert!(region.peers.contains(&leader));
    assert_eq!(region.peers.len(), 3);

    let prev = pd.get_prev_region(get(b"c")).await.unwrap().into_inner();
    assert_eq!(prev.region.unwrap().end_key, b"b");
    let none = pd.get_prev_region(get(b"a")).await.unwrap().into_inner();
    assert!(none.region.is_none() && none.header.unwrap().error.is_none());

    let by_id = pd
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: header(&cluster),
            region_id: region.id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.region.unwrap().id, region.id);
    let unknown = pd
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: header(&cluster),
            region_id: 999_999,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        unknown.region.is_none(),
        "an unknown id is OK with no region"
    );

    let scan = pd
        .scan_regions(pdpb::ScanRegionsRequest {
            header: header(&cluster),
            start_key: b"c".to_vec(),
            end_key: vec![],
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        scan.regions.len(),
        2,
        "from the region holding the start key"
    );
    assert_eq!(scan.region_metas.len(), 2);
    assert_eq!(scan.leaders.len(), 2);
    let limited = pd
        .scan_regions(pdpb::ScanRegionsRequest {
            header: header(&cluster),
            start_key: vec![],
            end_key: b"m".to_vec(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        limited.regions.len(),
        2,
        "stops before the region starting at the end key"
    );
}

#[tokio::test]
async fn batch_scan_regions_rejects_unordered_ranges() {
    let cluster = MockCluster::builder()
        .split_raw(["b", "m"])
        .start()
        .await
        .unwrap();
    let mut pd = pd_client(&cluster).await;
    let range = |s: &[u8], e: &[u8]| pdpb::KeyRange {
        start_key: s.to_vec(),
        end_key: e.to_vec(),
    };
    let ok = pd
        .batch_scan_regions(pdpb::BatchScanRegionsRequest {
            header: header(&cluster),
            ranges: vec![range(b"a", b"c"), range(b"c", b"d"), range(b"n", b"")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<u64> = ok
        .regions
        .iter()
        .map(|r| r.region.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids.len(), 3, "de-duplicated: {ids:?}");
    // Inverted, overlapping and out-of-order ranges: a header error, no regions.
    for ranges in [
        vec![range(b"c", b"a")],
        vec![range(b"a", b"d"), range(b"c", b"e")],
        vec![range(b"c", b"d"), range(b"a", b"b")],
    ] {
        let resp = pd
            .batch_scan_regions(pdpb::BatchScanRegionsRequest {
                header: header(&cluster),
                ranges: ranges.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let header = resp.header.unwrap();
        assert_eq!(header.cluster_id, cluster.cluster_id());
        let err = header.error.unwrap();
        assert_eq!(err.r#type, pdpb::ErrorType::Unknown as i32, "{ranges:?}");
        assert!(err.message.starts_with("invalid key range"), "{err:?}");
        assert!(resp.regions.is_empty());
    }
}

#[tokio::test]
async fn stores() {
    let cluster = MockCluster::builder().stores(4).start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let all = pd
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: header(&cluster),
            exclude_tombstone_stores: true,
        })
        .await
        .unwrap()
        .into_inner();
    let addrs: Vec<String> = all.stores.iter().map(|s| s.address.clone()).collect();
    assert_eq!(addrs, cluster.store_addrs());
    for store in &all.stores {
        // Every advertised address really serves TiKV.
        channel(&store.address).await;
    }
    let missing = pd
        .get_store(pdpb::GetStoreRequest {
            header: header(&cluster),
            store_id: 999,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        missing.header.unwrap().error.unwrap().message,
        "invalid store ID 999, not found"
    );
}

#[tokio::test]
async fn gc_safe_points() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let update = |sp| pdpb::UpdateGcSafePointRequest {
        header: header(&cluster),
        safe_point: sp,
    };
    assert_eq!(
        pd.update_gc_safe_point(update(100))
            .await
            .unwrap()
            .into_inner()
            .new_safe_point,
        100
    );
    assert_eq!(
        pd.update_gc_safe_point(update(50))
            .await
            .unwrap()
            .into_inner()
            .new_safe_point,
        100,
        "never decreases, and a smaller value is no error"
    );
    let got = pd
        .get_gc_safe_point(pdpb::GetGcSafePointRequest {
            header: header(&cluster),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.safe_point, 100);

    let service = |id: &str, ttl: i64, sp: u64| pdpb::UpdateServiceGcSafePointRequest {
        header: header(&cluster),
        service_id: id.as_bytes().to_vec(),
        ttl,
        safe_point: sp,
    };
    // Without entries, gc_worker at 0 is the minimum.
    let r = pd
        .update_service_gc_safe_point(service("br", 3600, 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.service_id.as_slice(), r.min_safe_point),
        (&b"gc_worker"[..], 0)
    );
    let r = pd
        .update_service_gc_safe_point(service("gc_worker", i64::MAX, 20))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.service_id.as_slice(), r.min_safe_point),
        (&b"br"[..], 10),
        "br now holds the minimum"
    );
    assert!(r.ttl > 3500 && r.ttl <= 3600, "{}", r.ttl);
    let r = pd
        .update_service_gc_safe_point(service("br", 0, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.service_id.as_slice(), r.min_safe_point),
        (&b"gc_worker"[..], 20),
        "TTL 0 removes br"
    );
    let r = pd
        .update_service_gc_safe_point(service("cdc", 60, 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.min_safe_point, 20, "below the minimum: not stored");
}

#[tokio::test]
async fn keyspaces_under_api_v2() {
    let cluster = MockCluster::builder()
        .api_version(ApiVersion::V2)
        .keyspaces(["tenant"])
        .start()
        .await
        .unwrap();
    let mut ks =
        keyspacepb::keyspace_client::KeyspaceClient::new(channel(&cluster.pd_endpoint()).await);
    let load = |name: &str| keyspacepb::LoadKeyspaceRequest {
        header: header(&cluster),
        name: name.into(),
        ..Default::default()
    };
    let default = ks
        .load_keyspace(load("DEFAULT"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        default.keyspace.unwrap().keyspace,
        Some(keyspacepb::keyspace_meta::Keyspace::Id(0))
    );
    let tenant = ks.load_keyspace(load("tenant")).await.unwrap().into_inner();
    assert_eq!(
        tenant.keyspace.unwrap().keyspace,
        Some(keyspacepb::keyspace_meta::Keyspace::Id(1))
    );
    let missing = ks.load_keyspace(load("nope")).await.unwrap().into_inner();
    assert_eq!(
        missing.header.unwrap().error.unwrap().r#type,
        pdpb::ErrorType::EntryNotFound as i32
    );
}

#[tokio::test]
async fn pd_can_be_made_unavailable() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    cluster.set_pd_available(false);
    let status = pd
        .get_members(pdpb::GetMembersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    cluster.set_pd_available(true);
    assert!(pd
        .get_members(pdpb::GetMembersRequest::default())
        .await
        .is_ok());
}

/// A plain HTTP/1.1 GET, as `curl` or `pd-ctl` would send it: the status and the body.
async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let reply = http(addr, "GET", path, &[], "").await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn pd_http_api_reports_version_stores_and_regions() {
    let cluster = MockCluster::builder()
        .stores(3)
        .split_txn(["b", "m"])
        .start()
        .await
        .unwrap();
    let pd = cluster.pd_endpoint();

    let (status, body) = http_get(&pd, "/pd/api/v1/version").await;
    assert_eq!(status, 200);
    let version: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(version["version"].as_str().unwrap().starts_with('v'));

    let (status, body) = http_get(&pd, "/pd/api/v1/stores").await;
    assert_eq!(status, 200);
    let stores: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stores["count"], 3);
    let addresses: Vec<&str> = stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["store"]["state_name"], "Up");
            assert_eq!(s["status"]["region_count"], 3, "one peer per store");
            s["store"]["address"].as_str().unwrap()
        })
        .collect();
    assert_eq!(addresses, cluster.store_addrs());
    let leaders: u64 = stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"]["leader_count"].as_u64().unwrap())
        .sum();
    assert_eq!(leaders, 3);

    let (status, body) = http_get(&pd, "/pd/api/v1/regions").await;
    assert_eq!(status, 200);
    let regions: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(regions["count"], 3);
    let listed = regions["regions"].as_array().unwrap();
    for (json, region) in listed.iter().zip(cluster.regions()) {
        assert_eq!(json["id"], region.id);
        let hex: String = region
            .start_key
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(json["start_key"], hex, "upper-case hex, as PD prints it");
        assert_eq!(
            json["epoch"]["version"],
            region.region_epoch.unwrap().version
        );
        assert_eq!(json["peers"].as_array().unwrap().len(), 3);
        let leader = cluster.leader_of(region.id).unwrap();
        assert_eq!(json["leader"]["store_id"], leader);
        assert_eq!(json["leader"]["role_name"], "Voter");
    }

    let (status, _) = http_get(&pd, "/pd/api/v1/nonexistent").await;
    assert_eq!(status, 404);
    // gRPC still works on the same port.
    let mut client = pd_client(&cluster).await;
    let members = client
        .get_members(pdpb::GetMembersRequest {
            header: header(&cluster),
        })
        .await
        .unwrap();
    assert_eq!(
        members.into_inner().header.unwrap().cluster_id,
        cluster.cluster_id()
    );
}

#[tokio::test]
async fn gc_state_reports_the_safe_points_and_service_barriers() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    pd.update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
        header: header(&cluster),
        safe_point: 100,
    })
    .await
    .unwrap();
    pd.update_service_gc_safe_point(pdpb::UpdateServiceGcSafePointRequest {
        header: header(&cluster),
        service_id: b"br".to_vec(),
        ttl: 3600,
        safe_point: 150,
    })
    .await
    .unwrap();
    let state = pd
        .get_gc_state(pdpb::GetGcStateRequest {
            header: header(&cluster),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(state.header.unwrap().error.is_none());
    let gc = state.gc_state.unwrap();
    assert_eq!((gc.txn_safe_point, gc.gc_safe_point), (100, 100));
    assert!(!gc.is_keyspace_level_gc);
    assert_eq!(gc.gc_barriers.len(), 1);
    let barrier = &gc.gc_barriers[0];
    assert_eq!(
        (barrier.barrier_id.as_str(), barrier.barrier_ts),
        ("br", 150)
    );
    assert!(barrier.ttl_seconds > 3500 && barrier.ttl_seconds <= 3600);
    let bare = pd
        .get_gc_state(pdpb::GetGcStateRequest {
            header: header(&cluster),
            exclude_gc_barriers: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(bare.gc_state.unwrap().gc_barriers.is_empty());
    let status = pd
        .get_gc_state(pdpb::GetGcStateRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::FailedPrecondition,
        "no cluster id"
    );
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn composed(ts: &pdpb::Timestamp) -> u64 {
    ((ts.physical as u64) << 18) | ts.logical as u64
}

#[tokio::test]
async fn an_unavailable_pd_answers_not_leader_before_checking_the_cluster_id() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let mut tso = pd.tso(rx).await.unwrap().into_inner();
    let ts_request = pdpb::TsoRequest {
        header: header(&cluster),
        count: 1,
        ..Default::default()
    };
    tx.unbounded_send(ts_request.clone()).unwrap();
    assert!(tso.message().await.unwrap().is_some());

    cluster.set_pd_available(false);
    for cluster_id in [cluster.cluster_id(), 0, cluster.cluster_id() + 1] {
        let status = pd
            .get_region(pdpb::GetRegionRequest {
                header: Some(pdpb::RequestHeader {
                    cluster_id,
                    ..Default::default()
                }),
                region_key: b"a".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::Unavailable, "not leader"),
            "cluster id {cluster_id}"
        );
    }
    // An open TSO stream fails on its next request, and ends.
    tx.unbounded_send(ts_request).unwrap();
    let status = tso.message().await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unavailable, "not leader")
    );
    assert!(tso.message().await.unwrap().is_none());

    cluster.set_pd_available(true);
    let resp = pd
        .get_region(pdpb::GetRegionRequest {
            header: header(&cluster),
            region_key: b"a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.region.is_some());
}

#[tokio::test]
async fn cluster_info_needs_no_cluster_id_and_reports_the_pd_service_mode() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    // PD's Go client sends an empty request during discovery, before it knows the id.
    for header in [
        None,
        Some(pdpb::ResponseHeader {
            cluster_id: cluster.cluster_id(),
            error: None,
        }),
    ] {
        let info = pd
            .get_cluster_info(pdpb::GetClusterInfoRequest { header })
            .await
            .unwrap()
            .into_inner();
        let header = info.header.unwrap();
        assert_eq!(header.cluster_id, cluster.cluster_id());
        assert!(header.error.is_none());
        assert_eq!(info.service_modes, [pdpb::ServiceMode::PdSvcMode as i32]);
        assert!(info.tso_urls.is_empty());
    }
}

#[tokio::test]
async fn tso_logical_overflow_moves_to_a_later_physical() {
    // The largest batch the mock hands out; 8 of them need 4 physicals' worth of logicals.
    const COUNT: u32 = 1 << 17;
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let request = pdpb::TsoRequest {
        header: header(&cluster),
        count: COUNT,
        ..Default::default()
    };
    let before = now_ms();
    let mut replies = pd
        .tso(futures::stream::iter(vec![request; 8]))
        .await
        .unwrap()
        .into_inner();
    let mut physicals = Vec::new();
    let mut last = 0u64;
    while let Some(resp) = replies.message().await.unwrap() {
        assert_eq!(resp.count, COUNT);
        let ts = resp.timestamp.unwrap();
        assert_eq!(ts.suffix_bits, 0);
        assert!(ts.logical < 1 << 18);
        assert!(
            ts.logical + 1 >= i64::from(COUNT),
            "the whole batch shares one physical: {ts:?}"
        );
        let first = composed(&ts) - u64::from(COUNT) + 1;
        assert!(first > last, "batches must not overlap");
        last = composed(&ts);
        physicals.push(ts.physical);
    }
    let after = now_ms();
    assert_eq!(physicals.len(), 8);
    assert!(physicals.windows(2).all(|w| w[0] <= w[1]));
    physicals.dedup();
    assert!(physicals.len() >= 4, "{physicals:?}");
    assert!(
        physicals[0] >= before && *physicals.last().unwrap() <= after + 1000,
        "physical is wall-clock ms: {before}..{after} vs {physicals:?}"
    );
}

#[tokio::test]
async fn min_ts_is_a_fresh_timestamp() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let tso_once = |pd: &mut pdpb::pd_client::PdClient<_>| {
        let request = pdpb::TsoRequest {
            header: header(&cluster),
            count: 1,
            ..Default::default()
        };
        let mut pd = pd.clone();
        async move {
            let mut replies = pd
                .tso(futures::stream::iter(vec![request]))
                .await
                .unwrap()
                .into_inner();
            replies.message().await.unwrap().unwrap().timestamp.unwrap()
        }
    };
    let before = tso_once(&mut pd).await;
    let min = pd
        .get_min_ts(pdpb::GetMinTsRequest {
            header: header(&cluster),
        })
        .await
        .unwrap()
        .into_inner();
    let after = tso_once(&mut pd).await;
    let header = min.header.unwrap();
    assert_eq!(header.cluster_id, cluster.cluster_id());
    assert!(header.error.is_none());
    let ts = min.timestamp.unwrap();
    assert!(composed(&before) < composed(&ts) && composed(&ts) < composed(&after));
}

#[tokio::test]
async fn scan_regions_stops_at_a_positive_limit() {
    let cluster = MockCluster::builder()
        .split_raw(["b", "m"])
        .start()
        .await
        .unwrap();
    let mut pd = pd_client(&cluster).await;
    for (start, limit, starts) in [
        (&b""[..], 2, vec![&b""[..], b"b"]),
        (b"c", 1, vec![b"b"]),
        (b"c", 5, vec![b"b", b"m"]),
    ] {
        let scan = pd
            .scan_regions(pdpb::ScanRegionsRequest {
                header: header(&cluster),
                start_key: start.to_vec(),
                end_key: vec![],
                limit,
            })
            .await
            .unwrap()
            .into_inner();
        let got: Vec<&[u8]> = scan
            .regions
            .iter()
            .map(|r| r.region.as_ref().unwrap().start_key.as_slice())
            .collect();
        assert_eq!(got, starts, "start {start:?}, limit {limit}");
        assert_eq!(scan.region_metas.len(), starts.len());
        assert_eq!(scan.leaders.len(), starts.len());
    }
}

#[tokio::test]
async fn batch_scan_regions_limit_counts_regions_across_ranges() {
    let cluster = MockCluster::builder()
        .split_raw(["b", "m"])
        .start()
        .await
        .unwrap();
    let mut pd = pd_client(&cluster).await;
    let all: Vec<u64> = cluster.regions().iter().map(|r| r.id).collect();
    let ranges = vec![
        pdpb::KeyRange {
            start_key: b"a".to_vec(),
            end_key: b"c".to_vec(),
        },
        pdpb::KeyRange {
            start_key: b"n".to_vec(),
            end_key: vec![],
        },
    ];
    for (limit, contain_all_key_range, expected) in [
        (0, false, &all[..]),
        (-1, false, &all[..]),
        (2, false, &all[..2]),
        (1, false, &all[..1]),
        (0, true, &all[..]),
        (2, true, &all[..2]),
    ] {
        let resp = pd
            .batch_scan_regions(pdpb::BatchScanRegionsRequest {
                header: header(&cluster),
                ranges: ranges.clone(),
                limit,
                contain_all_key_range,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // The mock's regions tile the key space, so every range is fully covered.
        assert!(resp.header.unwrap().error.is_none());
        let ids: Vec<u64> = resp
            .regions
            .iter()
            .map(|r| r.region.as_ref().unwrap().id)
            .collect();
        assert_eq!(ids, expected, "limit {limit}, all {contain_all_key_range}");
    }
}

#[tokio::test]
async fn get_region_sends_no_buckets_when_buckets_are_disabled() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let resp = pd
        .get_region(pdpb::GetRegionRequest {
            header: header(&cluster),
            region_key: b"k".to_vec(),
            need_buckets: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.header.unwrap().error.is_none());
    assert!(resp.region.is_some() && resp.leader.is_some());
    assert!(resp.buckets.is_none());
    assert!(resp.down_peers.is_empty() && resp.pending_peers.is_empty());
}

#[tokio::test]
async fn stores_are_up_and_a_stopped_store_is_no_tombstone() {
    let cluster = MockCluster::builder().stores(3).start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    for (id, addr) in cluster.store_ids().into_iter().zip(cluster.store_addrs()) {
        let resp = pd
            .get_store(pdpb::GetStoreRequest {
                header: header(&cluster),
                store_id: id,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(resp.header.unwrap().error.is_none());
        let store = resp.store.unwrap();
        assert_eq!((store.id, store.address.as_str()), (id, addr.as_str()));
        assert_eq!(store.state, metapb::StoreState::Up as i32);
        assert_eq!(store.node_state, metapb::NodeState::Serving as i32);
        assert!(store.labels.is_empty());
        assert!(!store.version.is_empty());
    }

    let stopped = cluster.store_ids()[1];
    assert!(cluster.stop_store(stopped));
    for exclude_tombstone_stores in [true, false] {
        let all = pd
            .get_all_stores(pdpb::GetAllStoresRequest {
                header: header(&cluster),
                exclude_tombstone_stores,
            })
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<u64> = all.stores.iter().map(|s| s.id).collect();
        assert_eq!(ids, cluster.store_ids());
        let down = all.stores.iter().find(|s| s.id == stopped).unwrap();
        assert_eq!(down.state, metapb::StoreState::Up as i32);
    }

    let missing = pd
        .get_store(pdpb::GetStoreRequest {
            header: header(&cluster),
            store_id: 999,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(missing.store.is_none());
    let header = missing.header.unwrap();
    assert_eq!(header.cluster_id, cluster.cluster_id());
    assert_eq!(
        header.error.unwrap().r#type,
        pdpb::ErrorType::Unknown as i32
    );
}

fn service_safe_point(
    cluster: &MockCluster,
    id: &str,
    ttl: i64,
    safe_point: u64,
) -> pdpb::UpdateServiceGcSafePointRequest {
    pdpb::UpdateServiceGcSafePointRequest {
        header: header(cluster),
        service_id: id.as_bytes().to_vec(),
        ttl,
        safe_point,
    }
}

/// `TTL = expire_at - now` for an entry that never expires.
fn assert_infinite_ttl(ttl: i64) {
    assert!(
        ttl.abs_diff(i64::MAX - now_secs()) <= 1,
        "{ttl} is not i64::MAX - now"
    );
}

#[tokio::test]
async fn gc_worker_never_expires_while_other_service_safe_points_do() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let r = pd
        .update_service_gc_safe_point(service_safe_point(&cluster, "br", 1, 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.service_id.as_slice(), r.min_safe_point),
        (&b"gc_worker"[..], 0)
    );
    assert_infinite_ttl(r.ttl);
    // A finite TTL for gc_worker is forced to infinity.
    let r = pd
        .update_service_gc_safe_point(service_safe_point(&cluster, "gc_worker", 1, 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.service_id.as_slice(), r.min_safe_point), (&b"br"[..], 5));
    assert!((0..=1).contains(&r.ttl), "{}", r.ttl);

    // Expiry is checked against whole seconds, so give br's one second plenty of room.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = pd
        .update_service_gc_safe_point(service_safe_point(&cluster, "probe", 0, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.service_id.as_slice(), r.min_safe_point),
        (&b"gc_worker"[..], 10),
        "br expired, gc_worker did not"
    );
    assert_infinite_ttl(r.ttl);
}

#[tokio::test]
async fn a_negative_ttl_deletes_a_service_safe_point_without_storing_one() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let update = |id: &str, ttl: i64, sp: u64| {
        let req = service_safe_point(&cluster, id, ttl, sp);
        let mut pd = pd.clone();
        async move {
            let r = pd
                .update_service_gc_safe_point(req)
                .await
                .unwrap()
                .into_inner();
            assert!(r.header.unwrap().error.is_none());
            (
                String::from_utf8(r.service_id).unwrap(),
                r.min_safe_point,
                r.ttl,
            )
        }
    };
    let (id, min, _) = update("gc_worker", i64::MAX, 10).await;
    assert_eq!((id.as_str(), min), ("gc_worker", 10));
    // now + i64::MAX saturates: cdc never expires either.
    update("cdc", i64::MAX, 20).await;
    let (id, min, ttl) = update("gc_worker", i64::MAX, 30).await;
    assert_eq!((id.as_str(), min), ("cdc", 20), "cdc is the new minimum");
    assert_infinite_ttl(ttl);

    let (id, min, ttl) = update("cdc", -1, 40).await;
    assert_eq!((id.as_str(), min), ("gc_worker", 30), "cdc is gone");
    assert_infinite_ttl(ttl);
    let state = pd
        .get_gc_state(pdpb::GetGcStateRequest {
            header: header(&cluster),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        state.gc_state.unwrap().gc_barriers.is_empty(),
        "a TTL <= 0 stores nothing"
    );
}

#[tokio::test]
async fn keyspaces_load_by_id_and_by_name_only_once_split() {
    let cluster = MockCluster::builder()
        .stores(3)
        .api_version(ApiVersion::V2)
        .keyspaces(["tenant"])
        .start()
        .await
        .unwrap();
    let mut ks =
        keyspacepb::keyspace_client::KeyspaceClient::new(channel(&cluster.pd_endpoint()).await);
    let by_id = |id: u32| keyspacepb::LoadKeyspaceByIdRequest {
        header: header(&cluster),
        keyspace: Some(keyspacepb::load_keyspace_by_id_request::Keyspace::Id(id)),
    };
    let by_name = |name: &str| keyspacepb::LoadKeyspaceRequest {
        header: header(&cluster),
        name: name.into(),
        ..Default::default()
    };
    for (id, name) in [(0, "DEFAULT"), (1, "tenant")] {
        let resp = ks
            .load_keyspace_by_id(by_id(id))
            .await
            .unwrap()
            .into_inner();
        assert!(resp.header.unwrap().error.is_none());
        let meta = resp.keyspace.unwrap();
        assert_eq!(meta.name, name);
        assert_eq!(
            meta.keyspace,
            Some(keyspacepb::keyspace_meta::Keyspace::Id(id))
        );
        assert_eq!(meta.state, keyspacepb::KeyspaceState::Enabled as i32);
        assert!(meta.created_at > 0 && meta.created_at <= now_secs());
        assert!(meta.state_changed_at >= meta.created_at);
    }
    let missing = ks
        .load_keyspace_by_id(by_id(99))
        .await
        .unwrap()
        .into_inner();
    assert!(missing.keyspace.is_none());
    assert_eq!(
        missing.header.unwrap().error.unwrap().r#type,
        pdpb::ErrorType::EntryNotFound as i32
    );

    // Merge away tenant's right bound: its transactional range is no longer split off.
    let regions = cluster.regions();
    let right = regions
        .iter()
        .position(|r| cluster.region_of_txn_key(b"x\0\0\x02").unwrap().id == r.id)
        .unwrap();
    assert_eq!(
        regions[right - 1].id,
        cluster.region_of_txn_key(b"x\0\0\x01").unwrap().id
    );
    cluster
        .merge(regions[right - 1].id, regions[right].id)
        .unwrap();
    let tenant = ks
        .load_keyspace(by_name("tenant"))
        .await
        .unwrap()
        .into_inner();
    assert!(tenant.keyspace.is_none());
    assert_eq!(
        tenant.header.unwrap().error.unwrap().r#type,
        pdpb::ErrorType::EntryNotFound as i32
    );
    let default = ks
        .load_keyspace(by_name("DEFAULT"))
        .await
        .unwrap()
        .into_inner();
    assert!(default.header.unwrap().error.is_none());
    let tenant = ks.load_keyspace_by_id(by_id(1)).await.unwrap().into_inner();
    assert!(
        tenant.header.unwrap().error.is_none(),
        "no region check by id"
    );
    assert_eq!(tenant.keyspace.unwrap().name, "tenant");
}

#[tokio::test]
async fn a_pd_clock_jump_moves_the_next_timestamp_ahead_by_the_jump() {
    let cluster = MockCluster::builder().start().await.unwrap();
    let mut pd = pd_client(&cluster).await;
    let request = pdpb::TsoRequest {
        header: header(&cluster),
        count: 1,
        ..Default::default()
    };
    let physical = |resp: pdpb::TsoResponse| resp.timestamp.unwrap().physical;
    let mut replies = pd
        .tso(futures::stream::iter(vec![request.clone()]))
        .await
        .unwrap()
        .into_inner();
    let before = physical(replies.message().await.unwrap().unwrap());
    cluster.jump_pd_clock(std::time::Duration::from_secs(3600));
    let mut replies = pd
        .tso(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let after = physical(replies.message().await.unwrap().unwrap());
    assert!(after - before >= 3_600_000, "{before} -> {after}");
}
