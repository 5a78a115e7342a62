//! Bad input never crashes the mock: seeded random requests of every kind, with garbage
//! and with well-formed contexts, each answered with a response or a deliberate gRPC status
//! (never a dropped connection or an internal error), no handler panics, and the cluster
//! serves normally afterwards.
//!
//! `MOCK_FUZZ_SEED=<n>` replays one seed, `MOCK_FUZZ_ROUNDS=<n>` sends more requests (1500 by
//! default) for a longer search.

use std::sync::{Mutex, PoisonError};

use tikv_client::proto::kvrpcpb::Action;
use tikv_client::proto::tikvpb::tikv_client::TikvClient;
use tikv_client::proto::{kvrpcpb, metapb, pdpb};
use tikv_client::testutils::{ApiVersion, MockCluster};
use tonic::transport::Channel;
use tonic::Code;

use super::mock_txn::{lock_req, put, store, ts};
use super::util::{ctx_for, pd_client, tikv, txn_ctx_for};

/// Panics seen anywhere in this test process (nextest runs each test in its own).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// xorshift64*: small, seeded, good enough to pick fields.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A timestamp: the edges, a small one, or one near now.
    fn ts(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => self.below(1000),
            _ => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64;
                ((now - self.below(10_000)) << 18) + self.below(1 << 18)
            }
        }
    }

    /// A key: empty, oversized, in one of the API modes, or random bytes.
    fn key(&mut self) -> Vec<u8> {
        let mut key = match self.below(8) {
            0 => return Vec::new(),
            1 if self.chance(20) => return vec![b'k'; 9000],
            2 => b"x\0\0\0".to_vec(),
            3 => b"r\0\0\0".to_vec(),
            4 => b"t\x80".to_vec(),
            _ => Vec::new(),
        };
        for _ in 0..self.below(6) {
            key.push(b"abmnz\0\xff"[self.below(7) as usize]);
        }
        key
    }

    fn keys(&mut self) -> Vec<Vec<u8>> {
        (0..self.below(5)).map(|_| self.key()).collect()
    }

    fn range(&mut self) -> kvrpcpb::KeyRange {
        kvrpcpb::KeyRange {
            start_key: self.key(),
            end_key: self.key(),
        }
    }

    /// Any enum value, valid or not.
    fn int(&mut self, valid: u64) -> i32 {
        self.below(valid + 3) as i32 - 1
    }

    fn mutation(&mut self) -> kvrpcpb::Mutation {
        kvrpcpb::Mutation {
            op: self.int(8),
            key: self.key(),
            value: self.key(),
            assertion: self.int(3),
        }
    }

    fn cf(&mut self) -> String {
        ["", "default", "lock", "write", "bogus"][self.below(5) as usize].into()
    }
}

/// A context for `key`: mostly the one a correct client sends, sometimes garbage.
fn context(rng: &mut Rng, cluster: &MockCluster, key: &[u8], api: i32) -> kvrpcpb::Context {
    let (mut ctx, _) = if rng.chance(50) {
        txn_ctx_for(cluster, key)
    } else {
        ctx_for(cluster, key)
    };
    ctx.api_version = if rng.chance(85) { api } else { rng.int(2) };
    if rng.chance(25) {
        ctx.region_id = rng.below(12);
        ctx.region_epoch = Some(metapb::RegionEpoch {
            conf_ver: rng.below(5),
            version: rng.below(5),
        });
        ctx.peer = Some(metapb::Peer {
            id: rng.below(30),
            store_id: rng.below(5),
            ..Default::default()
        });
    }
    if rng.chance(20) {
        ctx.isolation_level = rng.int(3);
        ctx.replica_read = rng.chance(50);
        ctx.stale_read = rng.chance(50);
        ctx.resolved_locks = vec![rng.ts()];
        ctx.committed_locks = vec![rng.ts()];
        ctx.is_retry_request = rng.chance(50);
    }
    ctx
}

/// Sends one random request; an error is what the mock must never answer.
async fn one(
    rng: &mut Rng,
    cluster: &MockCluster,
    stores: &mut [TikvClient<Channel>],
    api: i32,
) -> Result<(), String> {
    let key = rng.key();
    let ctx = Some(context(rng, cluster, &key, api));
    let store = rng.below(stores.len() as u64) as usize;
    let c = &mut stores[store];
    let kind = rng.below(31);
    let outcome = match kind {
        0 => c
            .kv_get(kvrpcpb::GetRequest {
                context: ctx,
                key,
                version: rng.ts(),
                need_commit_ts: rng.chance(50),
            })
            .await
            .map(drop),
        1 => c
            .kv_scan(kvrpcpb::ScanRequest {
                context: ctx,
                start_key: key,
                end_key: rng.key(),
                limit: rng.below(20) as u32,
                version: rng.ts(),
                key_only: rng.chance(50),
                reverse: rng.chance(50),
                sample_step: rng.below(3) as u32,
            })
            .await
            .map(drop),
        2 => c
            .kv_batch_get(kvrpcpb::BatchGetRequest {
                context: ctx,
                keys: rng.keys(),
                version: rng.ts(),
                need_commit_ts: rng.chance(50),
            })
            .await
            .map(drop),
        3 => {
            let mutations = (0..rng.below(15)).map(|_| rng.mutation()).collect();
            c.kv_prewrite(kvrpcpb::PrewriteRequest {
                context: ctx,
                mutations,
                primary_lock: key,
                start_version: rng.ts(),
                lock_ttl: rng.below(5000),
                skip_constraint_check: rng.chance(20),
                pessimistic_actions: (0..rng.below(4)).map(|_| rng.int(3)).collect(),
                txn_size: rng.below(10),
                for_update_ts: if rng.chance(50) { 0 } else { rng.ts() },
                min_commit_ts: rng.ts(),
                use_async_commit: rng.chance(30),
                secondaries: rng.keys(),
                try_one_pc: rng.chance(20),
                max_commit_ts: rng.ts(),
                assertion_level: rng.int(3),
                for_update_ts_constraints: (0..rng.below(3))
                    .map(|_| kvrpcpb::prewrite_request::ForUpdateTsConstraint {
                        index: rng.below(6) as u32,
                        expected_for_update_ts: rng.ts(),
                    })
                    .collect(),
                ..Default::default()
            })
            .await
            .map(drop)
        }
        4 => c
            .kv_commit(kvrpcpb::CommitRequest {
                context: ctx,
                start_version: rng.ts(),
                keys: rng.keys(),
                commit_version: rng.ts(),
                ..Default::default()
            })
            .await
            .map(drop),
        5 => c
            .kv_cleanup(kvrpcpb::CleanupRequest {
                context: ctx,
                key,
                start_version: rng.ts(),
                current_ts: rng.ts(),
            })
            .await
            .map(drop),
        6 => c
            .kv_batch_rollback(kvrpcpb::BatchRollbackRequest {
                context: ctx,
                start_version: rng.ts(),
                keys: rng.keys(),
                ..Default::default()
            })
            .await
            .map(drop),
        7 => c
            .kv_scan_lock(kvrpcpb::ScanLockRequest {
                context: ctx,
                max_version: rng.ts(),
                start_key: key,
                limit: rng.below(5) as u32,
                end_key: rng.key(),
            })
            .await
            .map(drop),
        8 => c
            .kv_resolve_lock(kvrpcpb::ResolveLockRequest {
                context: ctx,
                start_version: rng.ts(),
                commit_version: rng.ts(),
                txn_infos: (0..rng.below(3))
                    .map(|_| kvrpcpb::TxnInfo {
                        txn: rng.ts(),
                        status: rng.ts(),
                        ..Default::default()
                    })
                    .collect(),
                keys: rng.keys(),
                ..Default::default()
            })
            .await
            .map(drop),
        9 => c
            .kv_check_txn_status(kvrpcpb::CheckTxnStatusRequest {
                context: ctx,
                primary_key: key,
                lock_ts: rng.ts(),
                caller_start_ts: rng.ts(),
                current_ts: rng.ts(),
                rollback_if_not_exist: rng.chance(50),
                force_sync_commit: rng.chance(20),
                resolving_pessimistic_lock: rng.chance(20),
                verify_is_primary: rng.chance(50),
                ..Default::default()
            })
            .await
            .map(drop),
        10 => c
            .kv_check_secondary_locks(kvrpcpb::CheckSecondaryLocksRequest {
                context: ctx,
                keys: rng.keys(),
                start_version: rng.ts(),
            })
            .await
            .map(drop),
        11 => c
            .kv_txn_heart_beat(kvrpcpb::TxnHeartBeatRequest {
                context: ctx,
                primary_lock: key,
                start_version: rng.ts(),
                advise_lock_ttl: rng.below(10_000),
                min_commit_ts: rng.ts(),
                ..Default::default()
            })
            .await
            .map(drop),
        12 => {
            let mutations = (0..rng.below(4)).map(|_| rng.mutation()).collect();
            c.kv_pessimistic_lock(kvrpcpb::PessimisticLockRequest {
                context: ctx,
                mutations,
                primary_lock: key,
                start_version: rng.ts(),
                lock_ttl: rng.below(5000),
                for_update_ts: rng.ts(),
                is_first_lock: rng.chance(50),
                // Short waits: a wait for a lock nobody releases lasts until its timeout.
                wait_timeout: rng.below(21) as i64 - 1,
                return_values: rng.chance(30),
                min_commit_ts: rng.ts(),
                check_existence: rng.chance(30),
                lock_only_if_exists: rng.chance(20),
                wake_up_mode: rng.int(2),
                ..Default::default()
            })
            .await
            .map(drop)
        }
        13 => c
            .kv_pessimistic_rollback(kvrpcpb::PessimisticRollbackRequest {
                context: ctx,
                start_version: rng.ts(),
                for_update_ts: rng.ts(),
                keys: rng.keys(),
            })
            .await
            .map(drop),
        14 => c
            .kv_delete_range(kvrpcpb::DeleteRangeRequest {
                context: ctx,
                start_key: key,
                end_key: rng.key(),
                notify_only: rng.chance(30),
            })
            .await
            .map(drop),
        15 => {
            let mutations = (0..rng.below(5)).map(|_| rng.mutation()).collect();
            c.kv_flush(kvrpcpb::FlushRequest {
                context: ctx,
                mutations,
                primary_key: key,
                start_ts: rng.ts(),
                min_commit_ts: rng.ts(),
                generation: rng.below(4),
                lock_ttl: rng.below(5000),
                assertion_level: rng.int(3),
            })
            .await
            .map(drop)
        }
        16 => c
            .kv_buffer_batch_get(kvrpcpb::BufferBatchGetRequest {
                context: ctx,
                keys: rng.keys(),
                version: rng.ts(),
            })
            .await
            .map(drop),
        17 => c
            .raw_get(kvrpcpb::RawGetRequest {
                context: ctx,
                key,
                cf: rng.cf(),
            })
            .await
            .map(drop),
        18 => c
            .raw_batch_get(kvrpcpb::RawBatchGetRequest {
                context: ctx,
                keys: rng.keys(),
                cf: rng.cf(),
            })
            .await
            .map(drop),
        19 => c
            .raw_put(kvrpcpb::RawPutRequest {
                context: ctx,
                key,
                value: rng.key(),
                cf: rng.cf(),
                ttl: if rng.chance(70) { 0 } else { rng.below(3) },
                for_cas: rng.chance(20),
            })
            .await
            .map(drop),
        20 => c
            .raw_batch_put(kvrpcpb::RawBatchPutRequest {
                context: ctx,
                pairs: (0..rng.below(4))
                    .map(|_| kvrpcpb::KvPair {
                        key: rng.key(),
                        value: rng.key(),
                        ..Default::default()
                    })
                    .collect(),
                cf: rng.cf(),
                ttls: (0..rng.below(4)).map(|_| rng.below(3)).collect(),
                for_cas: rng.chance(20),
                ..Default::default()
            })
            .await
            .map(drop),
        21 => c
            .raw_delete(kvrpcpb::RawDeleteRequest {
                context: ctx,
                key,
                cf: rng.cf(),
                for_cas: rng.chance(20),
            })
            .await
            .map(drop),
        22 => c
            .raw_batch_delete(kvrpcpb::RawBatchDeleteRequest {
                context: ctx,
                keys: rng.keys(),
                cf: rng.cf(),
                for_cas: rng.chance(20),
            })
            .await
            .map(drop),
        23 => c
            .raw_scan(kvrpcpb::RawScanRequest {
                context: ctx,
                start_key: key,
                limit: rng.below(20) as u32,
                key_only: rng.chance(50),
                cf: rng.cf(),
                reverse: rng.chance(50),
                end_key: rng.key(),
            })
            .await
            .map(drop),
        24 => c
            .raw_batch_scan(kvrpcpb::RawBatchScanRequest {
                context: ctx,
                ranges: (0..rng.below(4)).map(|_| rng.range()).collect(),
                each_limit: rng.below(10) as u32,
                key_only: rng.chance(50),
                cf: rng.cf(),
                reverse: rng.chance(50),
            })
            .await
            .map(drop),
        25 => c
            .raw_delete_range(kvrpcpb::RawDeleteRangeRequest {
                context: ctx,
                start_key: key,
                end_key: rng.key(),
                cf: rng.cf(),
            })
            .await
            .map(drop),
        26 => c
            .raw_get_key_ttl(kvrpcpb::RawGetKeyTtlRequest {
                context: ctx,
                key,
                cf: rng.cf(),
            })
            .await
            .map(drop),
        27 => c
            .raw_compare_and_swap(kvrpcpb::RawCasRequest {
                context: ctx,
                key,
                value: rng.key(),
                previous_not_exist: rng.chance(50),
                previous_value: rng.key(),
                cf: rng.cf(),
                ttl: if rng.chance(70) { 0 } else { rng.below(3) },
                delete: rng.chance(30),
            })
            .await
            .map(drop),
        28 => c
            .raw_checksum(kvrpcpb::RawChecksumRequest {
                context: ctx,
                algorithm: rng.int(1),
                ranges: (0..rng.below(3)).map(|_| rng.range()).collect(),
            })
            .await
            .map(drop),
        29 => c
            .split_region(kvrpcpb::SplitRegionRequest {
                context: ctx,
                split_key: key,
                split_keys: rng.keys(),
                is_raw_kv: rng.chance(50),
            })
            .await
            .map(drop),
        _ => c
            .unsafe_destroy_range(kvrpcpb::UnsafeDestroyRangeRequest {
                context: ctx,
                start_key: key,
                end_key: rng.key(),
            })
            .await
            .map(drop),
    };
    match outcome {
        Err(status) if broken(&status) => Err(format!("request kind {kind}: {status:?}")),
        _ => Ok(()),
    }
}

/// What a healthy mock never answers: these mean a handler failed or a connection broke.
fn broken(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unknown | Code::Internal | Code::Unavailable | Code::Cancelled | Code::DataLoss
    )
}

/// Random PD requests: routing with any keys and ids, timestamps of any count.
async fn one_pd(
    rng: &mut Rng,
    cluster: &MockCluster,
    pd: &mut pdpb::pd_client::PdClient<Channel>,
) -> Result<(), String> {
    let header = Some(pdpb::RequestHeader {
        cluster_id: if rng.chance(90) {
            cluster.cluster_id()
        } else {
            rng.below(3)
        },
        ..Default::default()
    });
    let kind = rng.below(6);
    let outcome = match kind {
        0 => pd
            .get_region(pdpb::GetRegionRequest {
                header,
                region_key: rng.key(),
                need_buckets: rng.chance(50),
            })
            .await
            .map(drop),
        1 => pd
            .get_prev_region(pdpb::GetRegionRequest {
                header,
                region_key: rng.key(),
                need_buckets: rng.chance(50),
            })
            .await
            .map(drop),
        2 => pd
            .scan_regions(pdpb::ScanRegionsRequest {
                header,
                start_key: rng.key(),
                limit: rng.below(10) as i32 - 2,
                end_key: rng.key(),
            })
            .await
            .map(drop),
        3 => pd
            .batch_scan_regions(pdpb::BatchScanRegionsRequest {
                header,
                need_buckets: rng.chance(50),
                ranges: (0..rng.below(4))
                    .map(|_| pdpb::KeyRange {
                        start_key: rng.key(),
                        end_key: rng.key(),
                    })
                    .collect(),
                limit: rng.below(10) as i32 - 2,
                contain_all_key_range: rng.chance(50),
            })
            .await
            .map(drop),
        4 => pd
            .get_store(pdpb::GetStoreRequest {
                header,
                store_id: rng.below(8),
            })
            .await
            .map(drop),
        _ => {
            let request = pdpb::TsoRequest {
                header,
                count: [0, 1, 7, 1 << 17, (1 << 17) + 1, u32::MAX][rng.below(6) as usize],
                ..Default::default()
            };
            match pd.tso(futures::stream::iter(vec![request])).await {
                Ok(replies) => replies.into_inner().message().await.map(drop),
                Err(status) => Err(status),
            }
        }
    };
    match outcome {
        Err(status) if broken(&status) => Err(format!("PD request kind {kind}: {status:?}")),
        _ => Ok(()),
    }
}

/// A number from the environment, else `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn survive_random_requests(api_version: ApiVersion, api: i32, seed: u64) {
    let seed = env_or("MOCK_FUZZ_SEED", seed);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(info.to_string());
        previous(info);
    }));
    let cluster = MockCluster::builder()
        .api_version(api_version)
        .split_txn(["b", "m"])
        .split_raw(["n"])
        .start()
        .await
        .unwrap();
    let mut stores = Vec::new();
    for id in cluster.store_ids() {
        stores.push(tikv(&cluster, id).await);
    }
    let mut pd = pd_client(&cluster).await;
    let mut rng = Rng(seed);
    for i in 0..env_or("MOCK_FUZZ_ROUNDS", 1500) {
        let result = if i % 5 == 0 {
            one_pd(&mut rng, &cluster, &mut pd).await
        } else {
            one(&mut rng, &cluster, &mut stores, api).await
        };
        if let Err(e) = result {
            panic!("seed {seed}, request {i}: {e}");
        }
    }
    let panics = PANICS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        panics.is_empty(),
        "seed {seed}: handlers panicked: {panics:?}"
    );
    // Still serving: a well-formed write and read round trip.
    let key = match api_version {
        ApiVersion::V2 => b"r\0\0\0after".to_vec(),
        _ => b"after".to_vec(),
    };
    let (mut ctx, leader) = ctx_for(&cluster, &key);
    ctx.api_version = api;
    let i = cluster
        .store_ids()
        .iter()
        .position(|s| *s == leader)
        .unwrap();
    let client = &mut stores[i];
    let put = client
        .raw_put(kvrpcpb::RawPutRequest {
            context: Some(ctx.clone()),
            key: key.clone(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        put.error.is_empty() && put.region_error.is_none(),
        "{put:?}"
    );
    let got = client
        .raw_get(kvrpcpb::RawGetRequest {
            context: Some(ctx),
            key,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.value, b"v");
}

#[tokio::test]
async fn random_requests_never_crash_an_api_v1_cluster() {
    survive_random_requests(ApiVersion::V1, kvrpcpb::ApiVersion::V1 as i32, 0x5eed_0001).await;
}

#[tokio::test]
async fn random_requests_never_crash_an_api_v2_cluster() {
    survive_random_requests(ApiVersion::V2, kvrpcpb::ApiVersion::V2 as i32, 0x5eed_0002).await;
}

/// The lock TTL (ms) a client may ask for is any u64: TiKV adds it to the lock's physical time
/// in release builds without overflow checks (so a huge TTL wraps and the lock looks expired);
/// the mock saturates instead, and such a lock never expires by TTL.
#[tokio::test]
async fn a_maximal_lock_ttl_never_expires_and_never_overflows() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let far_future = ts(1 << 40);

    // Raised by a heartbeat.
    s.prewrite(vec![put("h", "1")], "h", ts(200)).await;
    let beat = s
        .client
        .kv_txn_heart_beat(kvrpcpb::TxnHeartBeatRequest {
            context: Some(ctx.clone()),
            primary_lock: b"h".to_vec(),
            start_version: ts(200),
            advise_lock_ttl: u64::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(beat.lock_ttl, u64::MAX, "{beat:?}");
    let status = s
        .status(kvrpcpb::CheckTxnStatusRequest {
            primary_key: b"h".to_vec(),
            lock_ts: ts(200),
            caller_start_ts: ts(300),
            current_ts: far_future,
            ..Default::default()
        })
        .await;
    assert_eq!(status.lock_ttl, u64::MAX, "alive: {status:?}");
    assert_ne!(status.action, Action::TtlExpireRollback as i32);
    let cleanup = s
        .client
        .kv_cleanup(kvrpcpb::CleanupRequest {
            context: Some(ctx.clone()),
            key: b"h".to_vec(),
            start_version: ts(200),
            current_ts: far_future,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        cleanup.error.and_then(|e| e.locked).is_some(),
        "an unexpired lock is not cleaned up"
    );

    // Given at prewrite and at pessimistic locking.
    let prewrite = kvrpcpb::PrewriteRequest {
        context: Some(ctx.clone()),
        mutations: vec![put("p", "1")],
        primary_lock: b"p".to_vec(),
        start_version: ts(400),
        lock_ttl: u64::MAX,
        ..Default::default()
    };
    assert!(s.prewrite_req(prewrite).await.errors.is_empty());
    let mut lock = lock_req(&ctx, &["q"], "q", ts(500), ts(500), 0);
    lock.lock_ttl = u64::MAX;
    let locked = s
        .client
        .kv_pessimistic_lock(lock)
        .await
        .unwrap()
        .into_inner();
    assert!(locked.errors.is_empty(), "{locked:?}");
    for (key, start) in [("p", ts(400)), ("q", ts(500))] {
        let status = s
            .status(kvrpcpb::CheckTxnStatusRequest {
                primary_key: key.into(),
                lock_ts: start,
                caller_start_ts: ts(600),
                current_ts: far_future,
                resolving_pessimistic_lock: true,
                ..Default::default()
            })
            .await;
        assert_eq!(status.lock_ttl, u64::MAX, "{key}: {status:?}");
    }
    // The cluster still serves: the lock is committed normally.
    let commit = s.commit(&["p"], ts(400), ts(700)).await;
    assert!(commit.error.is_none(), "{commit:?}");
}

/// No commit ts can follow the maximal timestamp: async commit and 1PC prewrites there (at
/// start ts or for-update ts u64::MAX) fall back to 2PC, as when max_commit_ts is too small,
/// instead of overflowing `ts + 1` (TiKV's `TimeStamp::next` asserts and would crash).
#[tokio::test]
async fn async_commit_at_the_maximal_timestamp_falls_back_to_2pc() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let async_req = |key: &str, start: u64| kvrpcpb::PrewriteRequest {
        context: Some(ctx.clone()),
        mutations: vec![put(key, "v")],
        primary_lock: key.into(),
        start_version: start,
        lock_ttl: 3000,
        use_async_commit: true,
        ..Default::default()
    };
    let resp = s.prewrite_req(async_req("a", u64::MAX)).await;
    assert!(resp.errors.is_empty(), "{resp:?}");
    assert_eq!(resp.min_commit_ts, 0, "fell back to 2PC");

    let mut one_pc = async_req("b", u64::MAX);
    one_pc.use_async_commit = false;
    one_pc.try_one_pc = true;
    let resp = s.prewrite_req(one_pc).await;
    assert!(resp.errors.is_empty(), "{resp:?}");
    assert_eq!(resp.one_pc_commit_ts, 0, "not committed by 1PC");

    // A pessimistic transaction whose for-update ts is the maximal one.
    let locked = s
        .client
        .kv_pessimistic_lock(lock_req(&ctx, &["c"], "c", ts(100), u64::MAX, 0))
        .await
        .unwrap()
        .into_inner();
    assert!(locked.errors.is_empty(), "{locked:?}");
    let mut pessimistic = async_req("c", ts(100));
    pessimistic.for_update_ts = u64::MAX;
    pessimistic.pessimistic_actions =
        vec![kvrpcpb::prewrite_request::PessimisticAction::DoPessimisticCheck as i32];
    let resp = s.prewrite_req(pessimistic).await;
    assert!(resp.errors.is_empty(), "{resp:?}");
    assert_eq!(resp.min_commit_ts, 0, "fell back to 2PC");

    // The locks are there, as ordinary 2PC locks.
    let locks = s.all_locks().await;
    let locks: Vec<(&[u8], bool)> = locks
        .iter()
        .map(|l| (&l.key[..], l.use_async_commit))
        .collect();
    assert_eq!(
        locks,
        vec![(&b"a"[..], false), (&b"b"[..], false), (&b"c"[..], false)]
    );
}
