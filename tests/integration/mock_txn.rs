//! The mock TiKV's transactional RPCs against the spec (sections 3 and 4), through the raw
//! generated stubs: Percolator reads and writes, the CheckTxnStatus table, rollbacks, lock
//! resolution, async commit and 1PC.

use tikv_client::kv::memcomparable;
use tikv_client::proto::kvrpcpb::{self, Action, Op};
use tikv_client::proto::tikvpb::tikv_client::TikvClient;
use tikv_client::testutils::MockCluster;
use tonic::transport::Channel;

use super::util::{peer_on, tikv};

/// A TSO-shaped timestamp at `ms` milliseconds.
pub(crate) fn ts(ms: u64) -> u64 {
    ms << 18
}

pub(crate) struct Store {
    pub(crate) client: TikvClient<Channel>,
    pub(crate) ctx: kvrpcpb::Context,
}

/// A stub for the leader of the (single) region, with a filled context.
pub(crate) async fn store(cluster: &MockCluster) -> Store {
    let region = cluster.regions()[0].clone();
    let leader = cluster.leader_of(region.id).unwrap();
    Store {
        client: tikv(cluster, leader).await,
        ctx: kvrpcpb::Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(peer_on(&region, leader)),
            ..Default::default()
        },
    }
}

pub(crate) fn put(key: &str, value: &str) -> kvrpcpb::Mutation {
    kvrpcpb::Mutation {
        op: Op::Put as i32,
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

impl Store {
    pub(crate) fn ctx(&self) -> Option<kvrpcpb::Context> {
        Some(self.ctx.clone())
    }

    pub(crate) async fn prewrite(
        &mut self,
        mutations: Vec<kvrpcpb::Mutation>,
        primary: &str,
        start: u64,
    ) -> kvrpcpb::PrewriteResponse {
        let req = kvrpcpb::PrewriteRequest {
            context: self.ctx(),
            mutations,
            primary_lock: primary.into(),
            start_version: start,
            lock_ttl: 3000,
            txn_size: 1,
            ..Default::default()
        };
        self.prewrite_req(req).await
    }

    /// A pessimistic prewrite of `key`, which the transaction locked at its start ts.
    pub(crate) async fn prewrite_locked(
        &mut self,
        key: &str,
        value: &str,
        start: u64,
    ) -> kvrpcpb::PrewriteResponse {
        let req = kvrpcpb::PrewriteRequest {
            context: self.ctx(),
            mutations: vec![put(key, value)],
            primary_lock: key.as_bytes().to_vec(),
            start_version: start,
            for_update_ts: start,
            pessimistic_actions: vec![
                kvrpcpb::prewrite_request::PessimisticAction::DoPessimisticCheck as i32,
            ],
            lock_ttl: 3000,
            ..Default::default()
        };
        self.prewrite_req(req).await
    }

    pub(crate) async fn prewrite_req(
        &mut self,
        req: kvrpcpb::PrewriteRequest,
    ) -> kvrpcpb::PrewriteResponse {
        let resp = self.client.kv_prewrite(req).await.unwrap().into_inner();
        assert!(resp.region_error.is_none(), "{resp:?}");
        resp
    }

    pub(crate) async fn commit(
        &mut self,
        keys: &[&str],
        start: u64,
        commit: u64,
    ) -> kvrpcpb::CommitResponse {
        let req = kvrpcpb::CommitRequest {
            context: self.ctx(),
            start_version: start,
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            commit_version: commit,
            ..Default::default()
        };
        self.client.kv_commit(req).await.unwrap().into_inner()
    }

    pub(crate) async fn get(&mut self, key: &str, version: u64) -> kvrpcpb::GetResponse {
        let req = kvrpcpb::GetRequest {
            context: self.ctx(),
            key: key.into(),
            version,
            need_commit_ts: true,
        };
        self.client.kv_get(req).await.unwrap().into_inner()
    }

    /// A KvGet of "k" with the replica-read and stale-read flags as given.
    pub(crate) async fn get_flagged(
        &mut self,
        version: u64,
        replica: bool,
        stale: bool,
    ) -> kvrpcpb::GetResponse {
        let req = kvrpcpb::GetRequest {
            context: Some(kvrpcpb::Context {
                replica_read: replica,
                stale_read: stale,
                ..self.ctx.clone()
            }),
            key: b"k".to_vec(),
            version,
            ..Default::default()
        };
        self.client.kv_get(req).await.unwrap().into_inner()
    }

    /// A KvGet under read-committed isolation.
    pub(crate) async fn get_rc(&mut self, key: &str, version: u64) -> kvrpcpb::GetResponse {
        let req = kvrpcpb::GetRequest {
            context: Some(kvrpcpb::Context {
                isolation_level: kvrpcpb::IsolationLevel::Rc as i32,
                ..self.ctx.clone()
            }),
            key: key.into(),
            version,
            ..Default::default()
        };
        self.client.kv_get(req).await.unwrap().into_inner()
    }

    /// Every lock in the region, at any version.
    pub(crate) async fn all_locks(&mut self) -> Vec<kvrpcpb::LockInfo> {
        let req = kvrpcpb::ScanLockRequest {
            context: self.ctx(),
            max_version: u64::MAX,
            ..Default::default()
        };
        self.client
            .kv_scan_lock(req)
            .await
            .unwrap()
            .into_inner()
            .locks
    }

    pub(crate) async fn status(
        &mut self,
        req: kvrpcpb::CheckTxnStatusRequest,
    ) -> kvrpcpb::CheckTxnStatusResponse {
        let req = kvrpcpb::CheckTxnStatusRequest {
            context: self.ctx(),
            ..req
        };
        self.client
            .kv_check_txn_status(req)
            .await
            .unwrap()
            .into_inner()
    }
}

#[tokio::test]
async fn two_phase_commit_and_snapshot_reads() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let resp = s
        .prewrite(vec![put("a", "1"), put("b", "2")], "a", ts(100))
        .await;
    assert!(resp.errors.is_empty(), "{resp:?}");
    // A reader at a later ts is blocked by the lock; an earlier one is not.
    let blocked = s.get("a", ts(110)).await;
    let info = blocked.error.unwrap().locked.unwrap();
    assert_eq!(
        (info.lock_version, info.primary_lock.as_slice()),
        (ts(100), &b"a"[..])
    );
    assert!(s.get("a", ts(90)).await.not_found);
    // Commit the primary, then the secondary.
    assert_eq!(
        s.commit(&["a"], ts(100), ts(120)).await.commit_version,
        ts(120)
    );
    assert_eq!(
        s.commit(&["b"], ts(100), ts(120)).await.commit_version,
        ts(120)
    );
    let got = s.get("a", ts(130)).await;
    assert_eq!((got.value.as_slice(), got.commit_ts), (&b"1"[..], ts(120)));
    assert!(
        s.get("b", ts(119)).await.not_found,
        "not visible before its commit ts"
    );
    // Committing again is a no-op success.
    assert!(s.commit(&["a"], ts(100), ts(120)).await.error.is_none());
}

#[tokio::test]
async fn prewrite_errors() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    s.prewrite(vec![put("k", "v1")], "k", ts(100)).await;
    s.commit(&["k"], ts(100), ts(120)).await;

    // A txn that started before that commit conflicts.
    let resp = s.prewrite(vec![put("k", "v2")], "k", ts(110)).await;
    let c = resp.errors[0].conflict.clone().unwrap();
    assert_eq!(
        (c.start_ts, c.conflict_ts, c.conflict_commit_ts),
        (ts(110), ts(100), ts(120))
    );
    assert!(
        !resp.errors[0].retryable.is_empty(),
        "retryable text set for compatibility"
    );

    // Every locked key is reported and nothing is written.
    s.prewrite(vec![put("x", "1"), put("y", "1")], "x", ts(200))
        .await;
    let resp = s
        .prewrite(
            vec![put("x", "2"), put("free", "2"), put("y", "2")],
            "x",
            ts(210),
        )
        .await;
    let locked: Vec<Vec<u8>> = resp
        .errors
        .iter()
        .map(|e| e.locked.clone().unwrap().key)
        .collect();
    assert_eq!(locked, vec![b"x".to_vec(), b"y".to_vec()]);
    assert!(
        s.all_locks().await.iter().all(|l| l.key != b"free"),
        "the free key was not locked"
    );

    // Insert of an existing key.
    let insert = kvrpcpb::Mutation {
        op: Op::Insert as i32,
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let resp = s.prewrite(vec![insert], "k", ts(300)).await;
    assert_eq!(resp.errors[0].already_exist.clone().unwrap().key, b"k");
}

#[tokio::test]
async fn commit_errors() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    s.prewrite(vec![put("k", "v")], "k", ts(100)).await;
    assert!(
        !s.commit(&["k"], ts(100), ts(100))
            .await
            .error
            .unwrap()
            .abort
            .is_empty(),
        "commit ts must exceed start ts"
    );
    let missing = s.commit(&["other"], ts(100), ts(110)).await.error.unwrap();
    assert!(missing.txn_lock_not_found.is_some() && !missing.retryable.is_empty());
    // All or nothing: one bad key aborts the whole request.
    assert!(s
        .commit(&["k", "other"], ts(100), ts(110))
        .await
        .error
        .is_some());
    assert!(s.get("k", ts(200)).await.error.is_some(), "k still locked");
}

#[tokio::test]
async fn check_txn_status_decision_table() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let check =
        |primary: &str, lock_ts: u64, caller: u64, current: u64| kvrpcpb::CheckTxnStatusRequest {
            primary_key: primary.into(),
            lock_ts,
            caller_start_ts: caller,
            current_ts: current,
            verify_is_primary: true,
            ..Default::default()
        };

    // Alive lock, not pushed.
    s.prewrite(vec![put("p", "v")], "p", ts(100)).await;
    let r = s.status(check("p", ts(100), 0, ts(101))).await;
    assert_eq!(
        (r.lock_ttl, r.commit_version, r.action),
        (3000, 0, Action::NoAction as i32)
    );
    assert_eq!(r.lock_info.unwrap().lock_version, ts(100));

    // A lock with min_commit_ts is pushed past the caller.
    let req = kvrpcpb::PrewriteRequest {
        context: Some(ctx.clone()),
        mutations: vec![put("q", "v")],
        primary_lock: b"q".to_vec(),
        start_version: ts(100),
        lock_ttl: 3000,
        min_commit_ts: ts(100) + 1,
        ..Default::default()
    };
    s.prewrite_req(req).await;
    let r = s.status(check("q", ts(100), ts(150), ts(150))).await;
    assert_eq!(r.action, Action::MinCommitTsPushed as i32);
    assert!(r.lock_info.unwrap().min_commit_ts > ts(150));

    // Expired (current ts beyond ttl): rolled back.
    let r = s.status(check("p", ts(100), 0, ts(100 + 3001))).await;
    assert_eq!(r.action, Action::TtlExpireRollback as i32);
    assert!(s.get("p", ts(5000)).await.not_found);
    // Rolled back already: both zero, NoAction.
    let r = s.status(check("p", ts(100), 0, ts(5000))).await;
    assert_eq!(
        (r.lock_ttl, r.commit_version, r.action),
        (0, 0, Action::NoAction as i32)
    );

    // Committed.
    s.prewrite(vec![put("c", "v")], "c", ts(200)).await;
    s.commit(&["c"], ts(200), ts(210)).await;
    assert_eq!(
        s.status(check("c", ts(200), 0, ts(300)))
            .await
            .commit_version,
        ts(210)
    );

    // Nothing there: TxnNotFound, or a protected rollback when asked.
    let r = s.status(check("none", ts(400), 0, ts(401))).await;
    assert_eq!(r.error.unwrap().txn_not_found.unwrap().start_ts, ts(400));
    let mut req = check("none", ts(400), 0, ts(401));
    req.rollback_if_not_exist = true;
    assert_eq!(
        s.status(req.clone()).await.action,
        Action::LockNotExistRollback as i32
    );
    let late = s.prewrite(vec![put("none", "v")], "none", ts(400)).await;
    assert!(
        late.errors[0].conflict.is_some(),
        "the protected rollback stops a late prewrite"
    );
    req.resolving_pessimistic_lock = true;
    req.lock_ts = ts(500);
    assert_eq!(
        s.status(req).await.action,
        Action::LockNotExistDoNothing as i32
    );

    // Async-commit locks are never rolled back here, even when expired.
    let req = kvrpcpb::PrewriteRequest {
        context: Some(ctx.clone()),
        mutations: vec![put("ac", "v")],
        primary_lock: b"ac".to_vec(),
        start_version: ts(600),
        lock_ttl: 10,
        use_async_commit: true,
        ..Default::default()
    };
    s.prewrite_req(req).await;
    let r = s.status(check("ac", ts(600), 0, u64::MAX)).await;
    assert!(r.lock_ttl > 0 && r.lock_info.unwrap().use_async_commit);

    // A lock whose primary is another key: PrimaryMismatch.
    s.prewrite(vec![put("sec", "v")], "prim", ts(700)).await;
    let r = s.status(check("sec", ts(700), 0, ts(701))).await;
    assert!(r.error.unwrap().primary_mismatch.is_some());
}

#[tokio::test]
async fn rollbacks_cleanup_resolve_heartbeat_and_scan_lock() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    s.prewrite(vec![put("a", "1"), put("b", "1")], "a", ts(100))
        .await;
    s.commit(&["a", "b"], ts(100), ts(110)).await;
    let rb = s
        .client
        .kv_batch_rollback(kvrpcpb::BatchRollbackRequest {
            context: Some(ctx.clone()),
            start_version: ts(100),
            keys: vec![b"a".to_vec()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        rb.error.unwrap().abort.contains("Committed"),
        "rolling back a committed txn fails"
    );
    let cleanup = s
        .client
        .kv_cleanup(kvrpcpb::CleanupRequest {
            context: Some(ctx.clone()),
            key: b"a".to_vec(),
            start_version: ts(100),
            current_ts: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cleanup.commit_version,
        ts(110),
        "cleanup reports the commit, not an error"
    );

    // Heartbeat: TTL only grows; unknown txn is TxnNotFound.
    s.prewrite(vec![put("h", "1")], "h", ts(200)).await;
    let hb = |advise| kvrpcpb::TxnHeartBeatRequest {
        context: Some(ctx.clone()),
        primary_lock: b"h".to_vec(),
        start_version: ts(200),
        advise_lock_ttl: advise,
        ..Default::default()
    };
    assert_eq!(
        s.client
            .kv_txn_heart_beat(hb(10_000))
            .await
            .unwrap()
            .into_inner()
            .lock_ttl,
        10_000
    );
    assert_eq!(
        s.client
            .kv_txn_heart_beat(hb(5_000))
            .await
            .unwrap()
            .into_inner()
            .lock_ttl,
        10_000
    );
    let mut gone = hb(1);
    gone.start_version = ts(1);
    assert!(s
        .client
        .kv_txn_heart_beat(gone)
        .await
        .unwrap()
        .into_inner()
        .error
        .unwrap()
        .txn_not_found
        .is_some());

    // Scan lock: max_version filters, limit 0 is unlimited.
    s.prewrite(vec![put("l1", "1"), put("l2", "1")], "l1", ts(300))
        .await;
    let scan = |max, limit| kvrpcpb::ScanLockRequest {
        context: Some(ctx.clone()),
        max_version: max,
        limit,
        ..Default::default()
    };
    assert_eq!(
        s.client
            .kv_scan_lock(scan(ts(250), 0))
            .await
            .unwrap()
            .into_inner()
            .locks
            .len(),
        1
    );
    assert_eq!(
        s.client
            .kv_scan_lock(scan(u64::MAX, 0))
            .await
            .unwrap()
            .into_inner()
            .locks
            .len(),
        3
    );
    assert_eq!(
        s.client
            .kv_scan_lock(scan(u64::MAX, 2))
            .await
            .unwrap()
            .into_inner()
            .locks
            .len(),
        2
    );

    // Resolve the whole region for txn 300 (commit), and lite-resolve txn 200 (rollback).
    let resolve = kvrpcpb::ResolveLockRequest {
        context: Some(ctx.clone()),
        start_version: ts(300),
        commit_version: ts(310),
        ..Default::default()
    };
    assert!(s
        .client
        .kv_resolve_lock(resolve)
        .await
        .unwrap()
        .into_inner()
        .error
        .is_none());
    assert_eq!(s.get("l2", ts(400)).await.value, b"1");
    let lite = kvrpcpb::ResolveLockRequest {
        context: Some(ctx.clone()),
        start_version: ts(200),
        keys: vec![b"h".to_vec()],
        ..Default::default()
    };
    assert!(s
        .client
        .kv_resolve_lock(lite)
        .await
        .unwrap()
        .into_inner()
        .error
        .is_none());
    assert!(s.get("h", ts(400)).await.not_found);
    assert!(s
        .client
        .kv_scan_lock(scan(u64::MAX, 0))
        .await
        .unwrap()
        .into_inner()
        .locks
        .is_empty());
}

#[tokio::test]
async fn async_commit_one_pc_and_max_ts() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    // A read at ts 500 raises max_ts: async commit must then commit after it.
    s.get("anything", ts(500)).await;
    let async_req = |key: &str, start: u64, max_commit: u64| kvrpcpb::PrewriteRequest {
        context: Some(ctx.clone()),
        mutations: vec![put(key, "v")],
        primary_lock: key.into(),
        start_version: start,
        lock_ttl: 3000,
        use_async_commit: true,
        secondaries: vec![],
        max_commit_ts: max_commit,
        ..Default::default()
    };
    let resp = s.prewrite_req(async_req("a", ts(100), 0)).await;
    assert!(
        resp.min_commit_ts > ts(500),
        "min_commit_ts {} must exceed max_ts",
        resp.min_commit_ts
    );
    // max_commit_ts below the computed value: falls back to 2PC (min_commit_ts 0).
    let resp = s.prewrite_req(async_req("b", ts(100), ts(200))).await;
    assert_eq!(resp.min_commit_ts, 0);
    // 1PC: committed directly, no lock left.
    let mut one_pc = async_req("c", ts(100), 0);
    one_pc.use_async_commit = false;
    one_pc.try_one_pc = true;
    let resp = s.prewrite_req(one_pc.clone()).await;
    assert!(resp.one_pc_commit_ts > ts(500));
    let got = s.get("c", resp.one_pc_commit_ts).await;
    assert_eq!(got.value, b"v");
    // A retried 1PC prewrite after commit succeeds with the same commit ts.
    let again = s.prewrite_req(one_pc).await;
    assert!(again.errors.is_empty());
    // CheckSecondaryLocks: locked key reported; a missing key gets a rollback.
    let check = kvrpcpb::CheckSecondaryLocksRequest {
        context: Some(ctx.clone()),
        keys: vec![b"a".to_vec()],
        start_version: ts(100),
    };
    let r = s
        .client
        .kv_check_secondary_locks(check)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.locks.len(), 1);
    let check = kvrpcpb::CheckSecondaryLocksRequest {
        context: Some(ctx.clone()),
        keys: vec![b"never".to_vec()],
        start_version: ts(100),
    };
    let r = s
        .client
        .kv_check_secondary_locks(check)
        .await
        .unwrap()
        .into_inner();
    assert!(r.locks.is_empty() && r.commit_ts == 0, "rolled back");
}

#[tokio::test]
async fn scans_report_locks_inline_and_respect_bounds() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    s.prewrite(
        vec![put("a", "1"), put("b", "1"), put("d", "1")],
        "a",
        ts(100),
    )
    .await;
    s.commit(&["a", "b", "d"], ts(100), ts(110)).await;
    s.prewrite(vec![put("c", "2")], "c", ts(120)).await;
    let scan = |start: &str, end: &str, limit, reverse| kvrpcpb::ScanRequest {
        context: Some(ctx.clone()),
        start_key: start.into(),
        end_key: end.into(),
        limit,
        version: ts(200),
        reverse,
        ..Default::default()
    };
    let r = s
        .client
        .kv_scan(scan("a", "", 10, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.pairs.len(), 4);
    assert!(
        r.pairs[2].error.as_ref().unwrap().locked.is_some(),
        "the lock is inline, the scan goes on"
    );
    assert_eq!(r.pairs[3].key, b"d");
    let r = s
        .client
        .kv_scan(scan("d", "a", 10, true))
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<Vec<u8>> = r.pairs.iter().map(|p| p.key.clone()).collect();
    assert_eq!(
        keys,
        vec![vec![], b"b".to_vec(), b"a".to_vec()],
        "reverse: start exclusive, end inclusive"
    );
    assert!(s
        .client
        .kv_scan(scan("", "", 10, true))
        .await
        .unwrap()
        .into_inner()
        .pairs
        .is_empty());
    assert!(s
        .client
        .kv_scan(scan("a", "", 0, false))
        .await
        .unwrap()
        .into_inner()
        .pairs
        .is_empty());
}

#[tokio::test]
async fn region_keys_are_memcomparable_for_transactional_data() {
    let cluster = MockCluster::builder()
        .split_txn(["m"])
        .start()
        .await
        .unwrap();
    let regions = cluster.regions();
    assert_eq!(regions[0].end_key, memcomparable::encode(b"m"));
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    // "n" belongs to the second region: the first refuses it.
    let resp = s
        .client
        .kv_prewrite(kvrpcpb::PrewriteRequest {
            context: Some(ctx.clone()),
            mutations: vec![put("n", "v")],
            primary_lock: b"n".to_vec(),
            start_version: ts(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.region_error.unwrap().key_not_in_region.is_some());
    let ok = s.prewrite(vec![put("l", "v")], "l", ts(1)).await;
    assert!(ok.errors.is_empty());
}

pub(crate) fn lock_req(
    ctx: &kvrpcpb::Context,
    keys: &[&str],
    primary: &str,
    start: u64,
    for_update: u64,
    wait_ms: i64,
) -> kvrpcpb::PessimisticLockRequest {
    kvrpcpb::PessimisticLockRequest {
        context: Some(ctx.clone()),
        mutations: keys
            .iter()
            .map(|k| kvrpcpb::Mutation {
                op: Op::PessimisticLock as i32,
                key: k.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect(),
        primary_lock: primary.into(),
        start_version: start,
        lock_ttl: 20_000,
        for_update_ts: for_update,
        wait_timeout: wait_ms,
        ..Default::default()
    }
}

#[tokio::test]
async fn pessimistic_locks_values_no_wait_timeout_and_prewrite() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    s.prewrite(vec![put("k", "v0")], "k", ts(10)).await;
    s.commit(&["k"], ts(10), ts(20)).await;

    let mut req = lock_req(&ctx, &["k", "absent"], "k", ts(100), ts(100), -1);
    req.return_values = true;
    let r = s
        .client
        .kv_pessimistic_lock(req)
        .await
        .unwrap()
        .into_inner();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.values, vec![b"v0".to_vec(), vec![]]);
    assert_eq!(r.not_founds, vec![false, true]);
    // Pessimistic locks do not block readers.
    assert_eq!(s.get("k", ts(150)).await.value, b"v0");

    // Another txn: no-wait fails at once with the lock; a short wait times out with it.
    let r = s
        .client
        .kv_pessimistic_lock(lock_req(&ctx, &["k"], "k", ts(200), ts(200), -1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.errors[0].locked.clone().unwrap().lock_version, ts(100));
    let started = std::time::Instant::now();
    let r = s
        .client
        .kv_pessimistic_lock(lock_req(&ctx, &["k"], "k", ts(200), ts(200), 200))
        .await
        .unwrap()
        .into_inner();
    assert!(r.errors[0].locked.is_some());
    assert!(started.elapsed() >= std::time::Duration::from_millis(190));

    // The holder prewrites with the pessimistic check and commits.
    assert!(s
        .prewrite_locked("k", "v1", ts(100))
        .await
        .errors
        .is_empty());
    // "absent" was locked but not written: a pessimistic lock committed leaves nothing.
    assert!(s
        .commit(&["k", "absent"], ts(100), ts(300))
        .await
        .error
        .is_none());
    assert_eq!(s.get("k", ts(400)).await.value, b"v1");
    assert!(s.get("absent", ts(400)).await.not_found);
    // Locking behind a newer commit is a write conflict.
    let r = s
        .client
        .kv_pessimistic_lock(lock_req(&ctx, &["k"], "k", ts(200), ts(250), -1))
        .await
        .unwrap()
        .into_inner();
    let c = r.errors[0].conflict.clone().unwrap();
    assert_eq!(
        (c.conflict_commit_ts, c.reason),
        (
            ts(300),
            kvrpcpb::write_conflict::Reason::PessimisticRetry as i32
        )
    );
}

#[tokio::test]
async fn a_released_lock_wakes_its_waiter_with_a_write_conflict() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    s.client
        .kv_pessimistic_lock(lock_req(&ctx, &["k"], "k", ts(100), ts(100), -1))
        .await
        .unwrap();
    let mut waiter = s.client.clone();
    let wait_ctx = ctx.clone();
    let waiting = tokio::spawn(async move {
        waiter
            .kv_pessimistic_lock(lock_req(&wait_ctx, &["k"], "k", ts(200), ts(200), 5000))
            .await
            .unwrap()
            .into_inner()
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the second txn waits");
    let rollback = kvrpcpb::PessimisticRollbackRequest {
        context: Some(ctx.clone()),
        start_version: ts(100),
        for_update_ts: ts(100),
        keys: vec![b"k".to_vec()],
    };
    s.client.kv_pessimistic_rollback(rollback).await.unwrap();
    let r = waiting.await.unwrap();
    let c = r.errors[0].conflict.clone().unwrap();
    assert_eq!(
        (c.start_ts, c.conflict_ts, c.conflict_commit_ts),
        (ts(200), ts(100), 0)
    );
    // PessimisticRollback writes no rollback record: the first txn could lock again.
    let again = s
        .client
        .kv_pessimistic_lock(lock_req(&ctx, &["k"], "k", ts(100), ts(110), -1))
        .await
        .unwrap()
        .into_inner();
    assert!(again.errors.is_empty(), "{again:?}");
}

#[tokio::test]
async fn deadlocks_are_detected_with_their_wait_chain() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let (t1, t2) = (ts(100), ts(200));
    s.client
        .kv_pessimistic_lock(lock_req(&ctx, &["a"], "a", t1, t1, -1))
        .await
        .unwrap();
    s.client
        .kv_pessimistic_lock(lock_req(&ctx, &["b"], "b", t2, t2, -1))
        .await
        .unwrap();
    // t1 waits for t2 on b.
    let mut first = s.client.clone();
    let first_ctx = ctx.clone();
    let t1_waits = tokio::spawn(async move {
        first
            .kv_pessimistic_lock(lock_req(&first_ctx, &["b"], "a", t1, t1, 3000))
            .await
            .unwrap()
            .into_inner()
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // t2 waiting for t1 on a closes the cycle: t2 is the one cancelled.
    let r = s
        .client
        .kv_pessimistic_lock(lock_req(&ctx, &["a"], "b", t2, t2, 3000))
        .await
        .unwrap()
        .into_inner();
    let d = r.errors[0].deadlock.clone().expect("deadlock");
    assert_eq!((d.lock_ts, d.lock_key.as_slice()), (t1, &b"a"[..]));
    let chain: Vec<(u64, u64, Vec<u8>)> = d
        .wait_chain
        .iter()
        .map(|e| (e.txn, e.wait_for_txn, e.key.clone()))
        .collect();
    assert_eq!(
        chain,
        vec![(t1, t2, b"b".to_vec()), (t2, t1, b"a".to_vec())]
    );
    // Key hashes are farmhash Fingerprint64; the deadlock's names the key t1 waits for.
    for entry in &d.wait_chain {
        assert_eq!(entry.key_hash, farmhash::fingerprint64(&entry.key));
    }
    assert_eq!(d.deadlock_key_hash, farmhash::fingerprint64(b"b"));
    assert!(!t1_waits.is_finished(), "the other member keeps waiting");
    let rollback = kvrpcpb::PessimisticRollbackRequest {
        context: Some(ctx),
        start_version: t2,
        for_update_ts: t2,
        keys: vec![b"b".to_vec()],
    };
    s.client.kv_pessimistic_rollback(rollback).await.unwrap();
    let woken = t1_waits.await.unwrap();
    assert!(woken.errors[0].conflict.is_some());
}

#[tokio::test]
async fn kv_delete_range_bounds() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    s.prewrite(vec![put("a", "1"), put("b", "1")], "a", ts(10))
        .await;
    let del = |start: &str, end: &str| kvrpcpb::DeleteRangeRequest {
        context: Some(ctx.clone()),
        start_key: start.into(),
        end_key: end.into(),
        notify_only: false,
    };
    // An empty end encodes below every key: refused with a message-only region error.
    let r = s
        .client
        .kv_delete_range(del("a", ""))
        .await
        .unwrap()
        .into_inner();
    assert!(r
        .region_error
        .unwrap()
        .message
        .contains("invalid delete range command"));
    let r = s
        .client
        .kv_delete_range(del("a", "b"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.error.is_empty());
    let locks = s
        .client
        .kv_scan_lock(kvrpcpb::ScanLockRequest {
            context: Some(ctx.clone()),
            max_version: u64::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .locks;
    assert_eq!(locks.len(), 1, "locks are deleted too");
}

#[tokio::test]
async fn a_retried_pessimistic_prewrite_checks_keys_it_did_not_lock() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    // Another transaction commits "k" after our for_update_ts.
    s.prewrite(vec![put("k", "other")], "k", ts(150)).await;
    s.commit(&["k"], ts(150), ts(160)).await;
    let prewrite = |key: &str, retry: bool| kvrpcpb::PrewriteRequest {
        context: Some(kvrpcpb::Context {
            is_retry_request: retry,
            ..ctx.clone()
        }),
        mutations: vec![put(key, "mine")],
        primary_lock: b"p".to_vec(),
        start_version: ts(100),
        for_update_ts: ts(120),
        pessimistic_actions: vec![
            kvrpcpb::prewrite_request::PessimisticAction::SkipPessimisticCheck as i32,
        ],
        lock_ttl: 3000,
        ..Default::default()
    };
    // A retry must not write over the newer commit: the lock it assumed is gone.
    let r = s.prewrite_req(prewrite("k", true)).await;
    assert!(
        r.errors[0].abort.contains("PessimisticLockNotFound"),
        "{r:?}"
    );
    // A first attempt skips the check (spec 4.2) and writes its lock.
    let r = s.prewrite_req(prewrite("k", false)).await;
    assert!(r.errors.is_empty(), "{r:?}");

    // A retry after the transaction was rolled back on a key meets its own rollback.
    assert!(s.prewrite_req(prewrite("j", false)).await.errors.is_empty());
    s.client
        .kv_batch_rollback(kvrpcpb::BatchRollbackRequest {
            context: Some(ctx.clone()),
            start_version: ts(100),
            keys: vec![b"j".to_vec()],
            ..Default::default()
        })
        .await
        .unwrap();
    let r = s.prewrite_req(prewrite("j", true)).await;
    let c = r.errors[0].conflict.clone().unwrap();
    assert_eq!(
        c.reason,
        kvrpcpb::write_conflict::Reason::SelfRolledBack as i32
    );
}

/// A stub and context for region `index` (in key order) of `cluster`.
pub(crate) async fn region_store(cluster: &MockCluster, index: usize) -> Store {
    let region = cluster.regions()[index].clone();
    let leader = cluster.leader_of(region.id).unwrap();
    Store {
        client: tikv(cluster, leader).await,
        ctx: kvrpcpb::Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(peer_on(&region, leader)),
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn rc_check_ts_reads_fail_on_locks_and_newer_commits() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let rc_ctx = kvrpcpb::Context {
        isolation_level: kvrpcpb::IsolationLevel::RcCheckTs as i32,
        ..s.ctx.clone()
    };
    s.prewrite(vec![put("k", "v1")], "p", ts(10)).await;
    let get = |version| kvrpcpb::GetRequest {
        context: Some(rc_ctx.clone()),
        key: b"k".to_vec(),
        version,
        ..Default::default()
    };
    // Any lock, whatever its timestamp (here younger than the read), is a conflict.
    let r = s.client.kv_get(get(ts(5))).await.unwrap().into_inner();
    let c = r.error.unwrap().conflict.unwrap();
    assert_eq!(
        (
            c.reason,
            c.start_ts,
            c.conflict_ts,
            c.conflict_commit_ts,
            c.primary
        ),
        (
            kvrpcpb::write_conflict::Reason::RcCheckTs as i32,
            ts(5),
            ts(10),
            0,
            b"p".to_vec()
        )
    );
    s.commit(&["k"], ts(10), ts(20)).await;
    // A commit newer than the read timestamp is a conflict too.
    let r = s.client.kv_get(get(ts(15))).await.unwrap().into_inner();
    let c = r.error.unwrap().conflict.unwrap();
    assert_eq!((c.conflict_ts, c.conflict_commit_ts), (0, ts(20)));
    let r = s.client.kv_get(get(ts(25))).await.unwrap().into_inner();
    assert_eq!(r.value, b"v1");
    // Scans report it inline, as locks are under SI.
    let r = s
        .client
        .kv_scan(kvrpcpb::ScanRequest {
            context: Some(rc_ctx.clone()),
            start_key: b"a".to_vec(),
            limit: 10,
            version: ts(15),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.pairs[0].error.as_ref().unwrap().conflict.is_some());
    // Plain RC never checks.
    let r = s.get_rc("k", ts(15)).await;
    assert!(r.error.is_none() && r.not_found);
}

#[tokio::test]
async fn point_reads_outside_the_region_fail_as_tikv_does() {
    let cluster = MockCluster::builder()
        .split_txn(["m"])
        .start()
        .await
        .unwrap();
    let mut s = region_store(&cluster, 0).await;
    s.prewrite(vec![put("a", "1")], "a", ts(10)).await;
    s.commit(&["a"], ts(10), ts(20)).await;
    // SI looks the lock up first: a generic error, not a region error.
    let r = s.get("z", ts(30)).await;
    assert!(r.region_error.is_none());
    assert!(
        r.error.unwrap().abort.contains("not in region"),
        "KeyError.abort"
    );
    // RC seeks the write CF: a region error.
    let r = s.get_rc("z", ts(30)).await;
    assert!(r.region_error.unwrap().key_not_in_region.is_some());
    // BatchGet: the stray key fails alone; the others are read.
    let r = s
        .client
        .kv_batch_get(kvrpcpb::BatchGetRequest {
            context: s.ctx(),
            keys: vec![b"a".to_vec(), b"z".to_vec()],
            version: ts(30),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.error.is_none());
    assert_eq!(
        (r.pairs[0].key.as_slice(), r.pairs[0].value.as_slice()),
        (&b"a"[..], &b"1"[..])
    );
    let stray = &r.pairs[1];
    assert!(
        stray.key.is_empty()
            && stray
                .error
                .as_ref()
                .unwrap()
                .abort
                .contains("not in region")
    );
}

#[tokio::test]
async fn a_reverse_scan_from_an_empty_start_key_reads_only_below_the_first_region() {
    let cluster = MockCluster::builder()
        .split_txn(["m"])
        .start()
        .await
        .unwrap();
    let scan = |s: &Store, limit: u32| kvrpcpb::ScanRequest {
        context: s.ctx(),
        start_key: Vec::new(),
        limit,
        version: ts(100),
        reverse: true,
        ..Default::default()
    };
    // The empty key encodes below everything: nothing precedes it in the first region...
    let mut first = region_store(&cluster, 0).await;
    let r = first
        .client
        .kv_scan(scan(&first, 10))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.pairs.is_empty());
    // ...and it lies below every other region's start.
    let mut second = region_store(&cluster, 1).await;
    let r = second
        .client
        .kv_scan(scan(&second, 10))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.unwrap().key_not_in_region.is_some());
    // With limit 0 nothing is sought, so nothing fails.
    let r = second
        .client
        .kv_scan(scan(&second, 0))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.pairs.is_empty());
}

/// Takes one timestamp from PD, which is what a stale read's safe ts trails.
/// Asks PD for one timestamp and returns it.
pub(crate) async fn issue_timestamp(cluster: &MockCluster) -> u64 {
    let mut pd = super::util::pd_client(cluster).await;
    let request = tikv_client::proto::pdpb::TsoRequest {
        header: Some(tikv_client::proto::pdpb::RequestHeader {
            cluster_id: cluster.cluster_id(),
            ..Default::default()
        }),
        count: 1,
        ..Default::default()
    };
    let mut replies = pd
        .tso(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let ts = replies.message().await.unwrap().unwrap().timestamp.unwrap();
    ((ts.physical as u64) << 18) | ts.logical as u64
}

#[tokio::test]
async fn followers_serve_replica_reads_and_stale_reads_up_to_their_safe_ts() {
    let cluster = MockCluster::builder().stores(3).start().await.unwrap();
    let mut leader = store(&cluster).await;
    let region = cluster.regions()[0].clone();
    let follower_store = cluster
        .store_ids()
        .into_iter()
        .find(|s| Some(*s) != cluster.leader_of(region.id))
        .unwrap();
    let mut follower = Store {
        client: tikv(&cluster, follower_store).await,
        ctx: kvrpcpb::Context {
            peer: Some(peer_on(&region, follower_store)),
            ..leader.ctx.clone()
        },
    };
    leader.prewrite(vec![put("k", "v1")], "k", ts(10)).await;
    leader.commit(&["k"], ts(10), ts(20)).await;
    // Without a flag a follower refuses; with replica_read it serves, raising max_ts.
    let r = follower.get_flagged(ts(500), false, false).await;
    assert!(r.region_error.unwrap().not_leader.is_some());
    let r = follower.get_flagged(ts(500), true, false).await;
    assert_eq!(r.value, b"v1");
    // Writes never go to followers, whatever the flags.
    let w = follower
        .client
        .kv_prewrite(kvrpcpb::PrewriteRequest {
            context: Some(kvrpcpb::Context {
                stale_read: true,
                replica_read: true,
                ..follower.ctx.clone()
            }),
            mutations: vec![put("w", "x")],
            primary_lock: b"w".to_vec(),
            start_version: ts(30),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(w.region_error.unwrap().not_leader.is_some());

    // Stale reads: nothing issued by PD yet, so the follower's safe ts is 0.
    let r = follower.get_flagged(ts(25), false, true).await;
    let not_ready = r.region_error.unwrap().data_is_not_ready.unwrap();
    assert_eq!((not_ready.region_id, not_ready.safe_ts), (region.id, 0));
    issue_timestamp(&cluster).await;
    let r = follower.get_flagged(ts(25), false, true).await;
    assert_eq!(r.value, b"v1", "served below the safe ts");
    // A lock holds the safe ts below its start.
    leader
        .prewrite(vec![put("other", "x")], "other", ts(40))
        .await;
    let r = follower.get_flagged(ts(50), false, true).await;
    assert_eq!(
        r.region_error.unwrap().data_is_not_ready.unwrap().safe_ts,
        ts(40) - 1
    );
    // The leader serves a stale read at any ts, as a normal read.
    let r = leader.get_flagged(ts(50), false, true).await;
    assert_eq!(r.value, b"v1");
    // ... without raising max_ts: an async-commit prewrite stays below the stale ts.
    let r = leader.get_flagged(ts(9000), false, true).await;
    assert!(r.region_error.is_none());
    let p = leader
        .prewrite_req(kvrpcpb::PrewriteRequest {
            context: leader.ctx(),
            mutations: vec![put("a", "1")],
            primary_lock: b"a".to_vec(),
            start_version: ts(600),
            lock_ttl: 3000,
            use_async_commit: true,
            min_commit_ts: ts(600) + 1,
            ..Default::default()
        })
        .await;
    assert!(p.min_commit_ts > ts(500), "the replica read raised max_ts");
    assert!(p.min_commit_ts < ts(9000), "the stale read did not");

    // A lagging safe ts refuses reads newer than the lag.
    leader
        .client
        .kv_batch_rollback(kvrpcpb::BatchRollbackRequest {
            context: leader.ctx(),
            start_version: ts(40),
            keys: vec![b"other".to_vec()],
            ..Default::default()
        })
        .await
        .unwrap();
    cluster.set_safe_ts_lag(std::time::Duration::from_secs(3600));
    issue_timestamp(&cluster).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let r = follower.get_flagged(ts(now_ms), false, true).await;
    assert!(r.region_error.unwrap().data_is_not_ready.is_some());
}

#[tokio::test]
async fn max_ts_is_per_store_and_synced_by_a_new_leader() {
    let cluster = MockCluster::builder().stores(3).start().await.unwrap();
    let region = cluster.regions()[0].clone();
    let stores = cluster.store_ids();
    let first = cluster.leader_of(region.id).unwrap();
    let others: Vec<u64> = stores.iter().copied().filter(|s| *s != first).collect();
    let on = |store: u64| {
        let region = region.clone();
        let cluster = &cluster;
        async move {
            let region = cluster
                .regions()
                .into_iter()
                .find(|r| r.id == region.id)
                .unwrap();
            Store {
                client: tikv(cluster, store).await,
                ctx: kvrpcpb::Context {
                    region_id: region.id,
                    region_epoch: region.region_epoch,
                    peer: Some(peer_on(&region, store)),
                    ..Default::default()
                },
            }
        }
    };
    let async_prewrite = |key: &str, start: u64| kvrpcpb::PrewriteRequest {
        mutations: vec![put(key, "v")],
        primary_lock: key.as_bytes().to_vec(),
        start_version: start,
        lock_ttl: 3000,
        use_async_commit: true,
        min_commit_ts: start + 1,
        ..Default::default()
    };

    // A read on the first leader raises its store's max_ts only.
    let mut leader = on(first).await;
    leader.get("k", ts(500)).await;
    cluster.transfer_leader(region.id, others[0]).unwrap();
    let mut second = on(others[0]).await;
    let p = second
        .prewrite_req(kvrpcpb::PrewriteRequest {
            context: second.ctx(),
            ..async_prewrite("a", ts(100))
        })
        .await;
    assert!(
        p.min_commit_ts < ts(500),
        "another store's reads do not count"
    );

    // A replica read served by a follower raises the leader's max_ts.
    let mut follower = on(others[1]).await;
    follower.ctx.replica_read = true;
    follower.get("k", ts(700)).await;
    let p = second
        .prewrite_req(kvrpcpb::PrewriteRequest {
            context: second.ctx(),
            ..async_prewrite("b", ts(100))
        })
        .await;
    assert!(p.min_commit_ts > ts(700), "the read index carried the ts");

    // A new leader syncs from PD: its max_ts covers every timestamp issued so far.
    issue_timestamp(&cluster).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    cluster.transfer_leader(region.id, others[1]).unwrap();
    let mut third = on(others[1]).await;
    let p = third
        .prewrite_req(kvrpcpb::PrewriteRequest {
            context: third.ctx(),
            ..async_prewrite("c", ts(100))
        })
        .await;
    assert!(
        p.min_commit_ts > ts(now - 1000),
        "synced from PD on becoming leader"
    );
}

#[tokio::test]
async fn a_new_leader_refuses_async_prewrites_until_its_max_ts_is_synced() {
    let cluster = MockCluster::builder().stores(2).start().await.unwrap();
    cluster.set_max_ts_sync_delay(std::time::Duration::from_millis(300));
    let region = cluster.regions()[0].clone();
    let old = cluster.leader_of(region.id).unwrap();
    let new = cluster.store_ids().into_iter().find(|s| *s != old).unwrap();
    cluster.transfer_leader(region.id, new).unwrap();
    let mut s = Store {
        client: tikv(&cluster, new).await,
        ctx: kvrpcpb::Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(peer_on(&region, new)),
            ..Default::default()
        },
    };
    let start = issue_timestamp(&cluster).await;
    let ctx = s.ctx();
    let prewrite = |key: &str, async_commit: bool, one_pc: bool| kvrpcpb::PrewriteRequest {
        context: ctx.clone(),
        mutations: vec![put(key, "v")],
        primary_lock: key.as_bytes().to_vec(),
        start_version: start,
        lock_ttl: 3000,
        use_async_commit: async_commit,
        try_one_pc: one_pc,
        min_commit_ts: start + 1,
        ..Default::default()
    };
    for (key, async_commit, one_pc) in [("a", true, false), ("b", false, true)] {
        let r = s
            .client
            .kv_prewrite(prewrite(key, async_commit, one_pc))
            .await;
        let e = r
            .unwrap()
            .into_inner()
            .region_error
            .expect("refused while not synced");
        assert!(e.max_timestamp_not_synced.is_some(), "{e:?}");
        assert!(
            e.message.contains("potentially stale max timestamp"),
            "{e:?}"
        );
        assert!(
            s.get(key, u64::MAX - 1).await.error.is_none(),
            "nothing locked"
        );
    }
    // Plain two-phase prewrites do not depend on max_ts.
    let r = s.prewrite_req(prewrite("c", false, false)).await;
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    // A region split off meanwhile has the same leader, just as unsynced.
    cluster.split_txn("m").unwrap();
    let (left, leader) = super::util::txn_ctx_for(&cluster, b"d");
    assert_eq!(leader, new);
    assert_ne!(left.region_id, region.id);
    let r = s
        .client
        .kv_prewrite(kvrpcpb::PrewriteRequest {
            context: Some(left.clone()),
            ..prewrite("d", true, false)
        })
        .await
        .unwrap()
        .into_inner();
    let e = r
        .region_error
        .expect("the split-off region is not synced either");
    assert!(e.max_timestamp_not_synced.is_some(), "{e:?}");

    // Once synced, the new leader's max_ts covers every timestamp PD issued before.
    let later = issue_timestamp(&cluster).await;
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let r = s
        .prewrite_req(kvrpcpb::PrewriteRequest {
            context: Some(left),
            ..prewrite("a", true, false)
        })
        .await;
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    assert!(r.min_commit_ts > later, "{} <= {later}", r.min_commit_ts);
}

#[tokio::test]
async fn versions_below_pd_gc_safe_point_are_collected() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    for (value, start, commit) in [("v1", 10, 20), ("v2", 30, 40)] {
        s.prewrite(vec![put("k", value)], "k", ts(start)).await;
        s.commit(&["k"], ts(start), ts(commit)).await;
    }
    s.prewrite(vec![put("gone", "x")], "gone", ts(11)).await;
    s.commit(&["gone"], ts(11), ts(12)).await;
    let delete = kvrpcpb::Mutation {
        op: Op::Del as i32,
        key: b"gone".to_vec(),
        ..Default::default()
    };
    s.prewrite(vec![delete], "gone", ts(13)).await;
    s.commit(&["gone"], ts(13), ts(14)).await;
    s.prewrite(vec![put("locked", "x")], "locked", ts(15)).await;
    assert_eq!(s.get("k", ts(25)).await.value, b"v1");

    let mut pd = super::util::pd_client(&cluster).await;
    pd.update_gc_safe_point(tikv_client::proto::pdpb::UpdateGcSafePointRequest {
        header: Some(tikv_client::proto::pdpb::RequestHeader {
            cluster_id: cluster.cluster_id(),
            ..Default::default()
        }),
        safe_point: ts(50),
    })
    .await
    .unwrap();
    // TiKV does not refuse reads below the safe point: they miss collected versions.
    let old = s.get("k", ts(25)).await;
    assert!(old.not_found && old.error.is_none(), "{old:?}");
    assert_eq!(
        s.get("k", ts(45)).await.value,
        b"v2",
        "the newest version stays"
    );
    assert!(s.get("gone", ts(12)).await.not_found);
    let lock = s
        .get("locked", ts(60))
        .await
        .error
        .expect("locks are not collected");
    assert_eq!(lock.locked.unwrap().lock_version, ts(15));
}

#[tokio::test]
async fn pessimistic_prewrites_zip_actions_and_report_other_locks_with_ttl_0() {
    use kvrpcpb::prewrite_request::{ForUpdateTsConstraint, PessimisticAction as A};
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let pessimistic =
        |keys: &[&str], actions: &[A], start: u64, for_update: u64| kvrpcpb::PrewriteRequest {
            context: Some(ctx.clone()),
            mutations: keys.iter().map(|k| put(k, "v")).collect(),
            pessimistic_actions: actions.iter().map(|a| *a as i32).collect(),
            primary_lock: keys[0].as_bytes().to_vec(),
            start_version: start,
            for_update_ts: for_update,
            lock_ttl: 3000,
            ..Default::default()
        };
    let locks = |s: &mut Store| {
        let mut client = s.client.clone();
        let context = s.ctx();
        async move {
            let resp = client
                .kv_scan_lock(kvrpcpb::ScanLockRequest {
                    context,
                    max_version: u64::MAX,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            resp.locks
                .into_iter()
                .map(|l| (String::from_utf8(l.key).unwrap(), l.lock_type))
                .collect::<Vec<_>>()
        }
    };

    // Three mutations, two actions: the third is silently dropped.
    let (t, t_for_update) = (ts(100), ts(110));
    s.client
        .kv_pessimistic_lock(lock_req(&ctx, &["a", "b"], "a", t, t_for_update, -1))
        .await
        .unwrap();
    let check = [A::DoPessimisticCheck, A::DoPessimisticCheck];
    let r = s
        .prewrite_req(pessimistic(&["a", "b", "c"], &check, t, t_for_update))
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
    let put_lock = Op::Put as i32;
    assert_eq!(
        locks(&mut s).await,
        vec![("a".into(), put_lock), ("b".into(), put_lock)],
        "no lock on c"
    );

    // for_update_ts 0 is optimistic whatever the actions say: no pessimistic lock needed.
    let r = s
        .prewrite_req(pessimistic(&["e"], &[A::DoPessimisticCheck], ts(150), 0))
        .await;
    assert!(r.errors.is_empty(), "{r:?}");

    // Another transaction's lock: TTL 0 in a pessimistic prewrite, the real TTL otherwise.
    s.prewrite(vec![put("d", "u")], "d", ts(200)).await;
    let r = s
        .prewrite_req(pessimistic(
            &["d"],
            &[A::SkipPessimisticCheck],
            ts(300),
            ts(310),
        ))
        .await;
    let info = r.errors[0].locked.clone().expect("locked");
    assert_eq!((info.lock_version, info.lock_ttl), (ts(200), 0));
    let r = s
        .prewrite_req(kvrpcpb::PrewriteRequest {
            context: s.ctx(),
            mutations: vec![put("d", "w")],
            primary_lock: b"d".to_vec(),
            start_version: ts(320),
            lock_ttl: 3000,
            ..Default::default()
        })
        .await;
    let info = r.errors[0].locked.clone().expect("locked");
    assert_eq!((info.lock_version, info.lock_ttl), (ts(200), 3000));

    // Expected for_update_ts constraints: a mismatch is PessimisticLockNotFound; an index
    // past the zipped mutations is refused.
    let (f, f_for_update) = (ts(400), ts(410));
    s.client
        .kv_pessimistic_lock(lock_req(&ctx, &["f"], "f", f, f_for_update, -1))
        .await
        .unwrap();
    for (index, expected, text) in [
        (0, ts(405), "PessimisticLockNotFound"),
        (1, f_for_update, "exceeds mutation count 1"),
    ] {
        let req = kvrpcpb::PrewriteRequest {
            for_update_ts_constraints: vec![ForUpdateTsConstraint {
                index,
                expected_for_update_ts: expected,
            }],
            ..pessimistic(&["f"], &[A::DoPessimisticCheck], f, f_for_update)
        };
        let r = s.prewrite_req(req).await;
        assert!(abort_of(r.errors.first()).contains(text), "{text}: {r:?}");
    }
    let req = kvrpcpb::PrewriteRequest {
        for_update_ts_constraints: vec![ForUpdateTsConstraint {
            index: 0,
            expected_for_update_ts: f_for_update,
        }],
        ..pessimistic(&["f"], &[A::DoPessimisticCheck], f, f_for_update)
    };
    assert!(s.prewrite_req(req).await.errors.is_empty());
}

#[tokio::test]
async fn every_reader_and_checker_raises_max_ts() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    // An async-commit prewrite's min_commit_ts shows the store's max_ts.
    let mut probes = 0;
    let mut max_ts = |s: &mut Store| {
        probes += 1;
        let key = format!("probe{probes}");
        let req = kvrpcpb::PrewriteRequest {
            context: s.ctx(),
            mutations: vec![put(&key, "v")],
            primary_lock: key.into_bytes(),
            start_version: ts(1),
            lock_ttl: 3000,
            use_async_commit: true,
            min_commit_ts: ts(1) + 1,
            ..Default::default()
        };
        let mut client = s.client.clone();
        async move {
            let r = client.kv_prewrite(req).await.unwrap().into_inner();
            assert!(r.errors.is_empty(), "{r:?}");
            r.min_commit_ts - 1
        }
    };
    let c = &ctx;
    let expect = |label: &str, now: u64, ts: u64| {
        assert_eq!(now, ts, "{label}: max_ts");
    };

    let mut client = s.client.clone();
    client
        .kv_batch_get(kvrpcpb::BatchGetRequest {
            context: Some(c.clone()),
            keys: vec![b"z".to_vec()],
            version: ts(100),
            ..Default::default()
        })
        .await
        .unwrap();
    expect("KvBatchGet", max_ts(&mut s).await, ts(100));
    client
        .kv_scan(kvrpcpb::ScanRequest {
            context: Some(c.clone()),
            start_key: b"a".to_vec(),
            limit: 1,
            version: ts(200),
            ..Default::default()
        })
        .await
        .unwrap();
    expect("KvScan", max_ts(&mut s).await, ts(200));
    client
        .kv_scan_lock(kvrpcpb::ScanLockRequest {
            context: Some(c.clone()),
            max_version: ts(300),
            ..Default::default()
        })
        .await
        .unwrap();
    expect("KvScanLock", max_ts(&mut s).await, ts(300));
    client
        .kv_check_txn_status(kvrpcpb::CheckTxnStatusRequest {
            context: Some(c.clone()),
            primary_key: b"nolock".to_vec(),
            lock_ts: ts(350),
            caller_start_ts: ts(400),
            current_ts: ts(380),
            rollback_if_not_exist: true,
            ..Default::default()
        })
        .await
        .unwrap();
    expect("KvCheckTxnStatus", max_ts(&mut s).await, ts(400));
    client
        .kv_cleanup(kvrpcpb::CleanupRequest {
            context: Some(c.clone()),
            key: b"nolock2".to_vec(),
            start_version: ts(500),
            ..Default::default()
        })
        .await
        .unwrap();
    expect("KvCleanup", max_ts(&mut s).await, ts(500));
    client
        .kv_check_secondary_locks(kvrpcpb::CheckSecondaryLocksRequest {
            context: Some(c.clone()),
            keys: vec![b"nolock3".to_vec()],
            start_version: ts(600),
        })
        .await
        .unwrap();
    expect("KvCheckSecondaryLocks", max_ts(&mut s).await, ts(600));
    let insert = kvrpcpb::Mutation {
        op: Op::Insert as i32,
        key: b"ins".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    s.prewrite(vec![insert], "ins", ts(700)).await;
    expect("an Insert prewrite", max_ts(&mut s).await, ts(700));
    let reading = kvrpcpb::PessimisticLockRequest {
        return_values: true,
        ..lock_req(c, &["pl"], "pl", ts(750), ts(800), -1)
    };
    client.kv_pessimistic_lock(reading).await.unwrap();
    expect("a reading KvPessimisticLock", max_ts(&mut s).await, ts(800));
    // A plain lock does not read, and u64::MAX is never taken.
    client
        .kv_pessimistic_lock(lock_req(c, &["pl2"], "pl2", ts(850), ts(900), -1))
        .await
        .unwrap();
    client
        .kv_scan_lock(kvrpcpb::ScanLockRequest {
            context: Some(c.clone()),
            max_version: u64::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    expect("neither", max_ts(&mut s).await, ts(800));
}

/// The abort text of a transactional response's (first) key error.
pub(crate) fn abort_of(e: Option<&kvrpcpb::KeyError>) -> &str {
    e.map_or("", |e| e.abort.as_str())
}

#[tokio::test]
async fn api_v2_checks_transactional_keys_and_admits_tidb_keys_from_v1_requests() {
    let cluster = MockCluster::builder()
        .api_version(tikv_client::testutils::ApiVersion::V2)
        .start()
        .await
        .unwrap();
    let v2 = kvrpcpb::ApiVersion::V2 as i32;
    let key = b"x\0\0\0k".to_vec();
    let (mut ctx, leader) = super::util::txn_ctx_for(&cluster, &key);
    ctx.api_version = v2;
    let mut client = tikv(&cluster, leader).await;
    let get = |ctx: &kvrpcpb::Context, key: &[u8]| kvrpcpb::GetRequest {
        context: Some(ctx.clone()),
        key: key.to_vec(),
        version: ts(10),
        ..Default::default()
    };
    let r = client.kv_get(get(&ctx, &key)).await.unwrap().into_inner();
    assert!(r.error.is_none() && r.not_found, "{r:?}");
    // Reads check the mode byte too: a raw-mode key is refused, not read.
    let r = client
        .kv_get(get(&ctx, b"r\0\0\0k"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        abort_of(r.error.as_ref()).contains("InvalidKeyMode"),
        "{r:?}"
    );
    let r = client
        .kv_batch_get(kvrpcpb::BatchGetRequest {
            context: Some(ctx.clone()),
            keys: vec![key.clone(), Vec::new()],
            version: ts(10),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        abort_of(r.error.as_ref()).contains("InvalidKeyMode"),
        "the empty key: {r:?}"
    );
    // Ranges need two bounds in one mode.
    let scan = |end: &[u8]| kvrpcpb::ScanRequest {
        context: Some(ctx.clone()),
        start_key: key.clone(),
        end_key: end.to_vec(),
        limit: 10,
        version: ts(10),
        ..Default::default()
    };
    let r = client.kv_scan(scan(b"")).await.unwrap().into_inner();
    assert!(
        abort_of(r.error.as_ref()).contains("InvalidKeyRangeMode"),
        "{r:?}"
    );
    let r = client
        .kv_scan(scan(b"x\0\0\x01"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_none(), "{r:?}");
    let r = client
        .kv_delete_range(kvrpcpb::DeleteRangeRequest {
            context: Some(ctx.clone()),
            start_key: key.clone(),
            end_key: b"r\0\0\x01".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.contains("InvalidKeyRangeMode"), "{r:?}");
    let r = client
        .kv_pessimistic_lock(kvrpcpb::PessimisticLockRequest {
            context: Some(ctx.clone()),
            ..lock_req(&ctx, &["r\0\0\0k"], "r\0\0\0k", ts(10), ts(10), -1)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        abort_of(r.errors.first()).contains("InvalidKeyMode"),
        "{r:?}"
    );

    // V1 requests reach a V2 store only with TiDB keys ('m', 't'), whole transactions of them.
    let tidb = b"t\x80\0\0\0\0\0\0\x01_r1".to_vec();
    let (mut v1, leader) = super::util::txn_ctx_for(&cluster, &tidb);
    v1.api_version = kvrpcpb::ApiVersion::V1 as i32;
    let mut s = Store {
        client: tikv(&cluster, leader).await,
        ctx: v1.clone(),
    };
    s.prewrite(
        vec![kvrpcpb::Mutation {
            op: Op::Put as i32,
            key: tidb.clone(),
            value: b"row".to_vec(),
            ..Default::default()
        }],
        std::str::from_utf8(&tidb).unwrap_or_default(),
        ts(20),
    )
    .await;
    let commit = s
        .client
        .kv_commit(kvrpcpb::CommitRequest {
            context: Some(v1.clone()),
            start_version: ts(20),
            keys: vec![tidb.clone()],
            commit_version: ts(21),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        commit.error.is_none() && commit.region_error.is_none(),
        "{commit:?}"
    );
    let r = s.client.kv_get(get(&v1, &tidb)).await.unwrap().into_inner();
    assert!(
        r.error.is_none() && r.not_found,
        "read below the commit: {r:?}"
    );
    let mut at = get(&v1, &tidb);
    at.version = ts(30);
    assert_eq!(
        s.client.kv_get(at).await.unwrap().into_inner().value,
        b"row"
    );
    let r = client.kv_get(get(&v1, &key)).await.unwrap().into_inner();
    assert!(
        abort_of(r.error.as_ref()).contains("InvalidKeyMode"),
        "{r:?}"
    );
    // Commands TiKV does not check take any API version.
    let status = client
        .kv_check_txn_status(kvrpcpb::CheckTxnStatusRequest {
            context: Some(kvrpcpb::Context {
                api_version: kvrpcpb::ApiVersion::V1 as i32,
                ..ctx.clone()
            }),
            primary_key: key.clone(),
            lock_ts: ts(5),
            caller_start_ts: ts(6),
            current_ts: ts(6),
            rollback_if_not_exist: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        status.error.is_none() && status.region_error.is_none(),
        "{status:?}"
    );
}

#[tokio::test]
async fn oversized_keys_and_unknown_mutation_ops_are_refused() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    // 7,600 bytes are 8,559 once memcomparable-encoded: over TiKV's 8 KiB limit.
    let big = "k".repeat(7600);
    let r = s
        .client
        .kv_prewrite(kvrpcpb::PrewriteRequest {
            context: s.ctx(),
            mutations: vec![put(&big, "v")],
            primary_lock: big.clone().into_bytes(),
            start_version: ts(10),
            lock_ttl: 3000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let text = abort_of(r.errors.first());
    assert!(
        text.contains("KeyTooLarge { size: 8559, limit: 8192 }"),
        "{text}"
    );
    let r = s
        .client
        .kv_pessimistic_lock(lock_req(&s.ctx.clone(), &[&big], &big, ts(10), ts(10), -1))
        .await
        .unwrap()
        .into_inner();
    assert!(abort_of(r.errors.first()).contains("KeyTooLarge"), "{r:?}");
    // 7,000 bytes encode to 7,884: accepted.
    let fits = "k".repeat(7000);
    let r = s
        .prewrite_req(kvrpcpb::PrewriteRequest {
            context: s.ctx(),
            mutations: vec![put(&fits, "v")],
            primary_lock: fits.clone().into_bytes(),
            start_version: ts(10),
            lock_ttl: 3000,
            ..Default::default()
        })
        .await;
    assert!(r.errors.is_empty(), "{r:?}");

    // Ops TiKV would panic on are refused, and nothing is written.
    let odd = |op: i32| kvrpcpb::Mutation {
        op,
        key: b"odd".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    for op in [Op::PessimisticLock as i32, Op::Rollback as i32, 99] {
        let r = s
            .prewrite_req(kvrpcpb::PrewriteRequest {
                context: s.ctx(),
                mutations: vec![odd(op)],
                primary_lock: b"odd".to_vec(),
                start_version: ts(20),
                lock_ttl: 3000,
                ..Default::default()
            })
            .await;
        assert!(
            abort_of(r.errors.first()).contains("unsupported mutation"),
            "{op}: {r:?}"
        );
    }
    let mut lock = lock_req(&s.ctx.clone(), &["odd"], "odd", ts(20), ts(20), -1);
    lock.mutations[0].op = Op::Put as i32;
    let r = s
        .client
        .kv_pessimistic_lock(lock)
        .await
        .unwrap()
        .into_inner();
    assert!(
        abort_of(r.errors.first()).contains("unsupported mutation"),
        "{r:?}"
    );
    assert!(
        s.get("odd", ts(30)).await.error.is_none(),
        "no lock was left"
    );
}

#[tokio::test]
async fn whole_request_read_errors_are_repeated_in_the_first_pair() {
    let cluster = MockCluster::builder()
        .split_txn(["m"])
        .start()
        .await
        .unwrap();
    let mut s = region_store(&cluster, 1).await;
    // An API version the store does not run: the request fails as a whole.
    let r = s
        .client
        .kv_batch_get(kvrpcpb::BatchGetRequest {
            context: Some(kvrpcpb::Context {
                api_version: kvrpcpb::ApiVersion::V2 as i32,
                ..s.ctx.clone()
            }),
            keys: vec![b"x".to_vec()],
            version: ts(10),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = r.error.unwrap();
    assert!(e.abort.contains("ApiVersionNotMatched"), "{e:?}");
    assert_eq!(r.pairs.len(), 1);
    assert_eq!(r.pairs[0].error.as_ref(), Some(&e));
    // A scan range reaching below the region start: InvalidReqRange, the same way.
    let r = s
        .client
        .kv_scan(kvrpcpb::ScanRequest {
            context: s.ctx(),
            start_key: b"a".to_vec(),
            limit: 10,
            version: ts(10),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = r.error.unwrap();
    assert!(e.abort.contains("InvalidReqRange"), "{e:?}");
    assert_eq!(r.pairs.len(), 1);
    assert_eq!(r.pairs[0].error.as_ref(), Some(&e));
}

#[tokio::test]
async fn a_lock_wait_timeout_says_how_long_ago_the_awaited_lock_changed() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let (a, w1, w2) = (ts(100), ts(200), ts(300));
    s.client
        .kv_pessimistic_lock(lock_req(&ctx, &["k"], "k", a, a, -1))
        .await
        .unwrap();
    // A wait that times out on the lock it started on reports 0.
    let r = s
        .client
        .kv_pessimistic_lock(lock_req(&ctx, &["k"], "x", ts(50), ts(50), 100))
        .await
        .unwrap()
        .into_inner();
    let info = r.errors[0].locked.clone().expect("locked");
    assert_eq!((info.lock_version, info.duration_to_last_update_ms), (a, 0));

    // Two force-mode waiters; after the release, w1 takes the lock and w2 waits on w1's.
    let waiter = |start: u64| {
        let mut client = s.client.clone();
        let req = kvrpcpb::PessimisticLockRequest {
            wake_up_mode: kvrpcpb::PessimisticLockWakeUpMode::WakeUpModeForceLock as i32,
            ..lock_req(&ctx, &["k"], "k", start, start, 600)
        };
        tokio::spawn(async move { client.kv_pessimistic_lock(req).await.unwrap().into_inner() })
    };
    let (first, second) = (waiter(w1), waiter(w2));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let released = std::time::Instant::now();
    s.client
        .kv_pessimistic_rollback(kvrpcpb::PessimisticRollbackRequest {
            context: s.ctx(),
            start_version: a,
            for_update_ts: a,
            keys: vec![b"k".to_vec()],
        })
        .await
        .unwrap();
    assert!(first.await.unwrap().errors.is_empty(), "w1 locked the key");
    let r = second.await.unwrap();
    let waited_since_change = released.elapsed().as_millis() as u64;
    let info = r.errors[0].locked.clone().expect("w2 timed out");
    assert_eq!(info.lock_version, w1, "the lock that replaced a's");
    assert!(
        (1..=waited_since_change).contains(&info.duration_to_last_update_ms),
        "{} not in 1..={waited_since_change}",
        info.duration_to_last_update_ms
    );
    assert!(
        info.duration_to_last_update_ms >= 300,
        "the change came ~500 ms before the timeout: {}",
        info.duration_to_last_update_ms
    );
}

#[tokio::test]
async fn force_lock_mode_locks_behind_newer_commits_and_after_a_wake_up() {
    use kvrpcpb::PessimisticLockKeyResultType as Result;
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    s.prewrite(vec![put("k", "v0")], "k", ts(10)).await;
    s.commit(&["k"], ts(10), ts(20)).await;
    let force =
        |keys: &[&str], start: u64, for_update: u64, wait: i64| kvrpcpb::PessimisticLockRequest {
            wake_up_mode: kvrpcpb::PessimisticLockWakeUpMode::WakeUpModeForceLock as i32,
            ..lock_req(&ctx, keys, keys[0], start, for_update, wait)
        };

    // Behind a newer commit: locked anyway, at the commit's ts, with the value.
    let r = s
        .client
        .kv_pessimistic_lock(force(&["k"], ts(5), ts(15), -1))
        .await
        .unwrap()
        .into_inner();
    assert!(r.errors.is_empty(), "{r:?}");
    let got = &r.results[0];
    assert_eq!(
        (
            got.r#type,
            got.locked_with_conflict_ts,
            got.value.as_slice(),
            got.existence
        ),
        (
            Result::LockResultLockedWithConflict as i32,
            ts(20),
            &b"v0"[..],
            true
        )
    );
    let locks = s
        .client
        .kv_scan_lock(kvrpcpb::ScanLockRequest {
            context: s.ctx(),
            max_version: u64::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .locks;
    assert_eq!(
        locks[0].lock_for_update_ts,
        ts(20),
        "the lock carries the newer ts"
    );
    // Re-locking with an older for_update_ts reports the lock's.
    let r = s
        .client
        .kv_pessimistic_lock(force(&["k"], ts(5), ts(18), -1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results[0].locked_with_conflict_ts, ts(20));
    // No conflict: a normal result, existence only when asked.
    let mut req = force(&["n"], ts(6), ts(30), -1);
    req.check_existence = true;
    let r = s
        .client
        .kv_pessimistic_lock(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results[0].r#type, Result::LockResultNormal as i32);
    assert!(!r.results[0].existence && r.results[0].value.is_empty());
    // One key per request only.
    let r = s
        .client
        .kv_pessimistic_lock(force(&["a", "b"], ts(7), ts(30), -1))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.errors[0].abort.is_empty());
    // A failure is in `errors` and marks the key failed.
    let r = s
        .client
        .kv_pessimistic_lock(force(&["k"], ts(8), ts(30), -1))
        .await
        .unwrap()
        .into_inner();
    assert!(r.errors[0].locked.is_some());
    assert_eq!(r.results[0].r#type, Result::LockResultFailed as i32);

    // A waiter in force mode locks by itself when the holder commits (normal mode would
    // answer a write conflict).
    s.client
        .kv_pessimistic_lock(lock_req(&ctx, &["w"], "w", ts(200), ts(200), -1))
        .await
        .unwrap();
    let waiter = {
        let mut client = s.client.clone();
        let req = force(&["w"], ts(300), ts(300), 5000);
        tokio::spawn(async move { client.kv_pessimistic_lock(req).await.unwrap().into_inner() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(s
        .prewrite_locked("w", "held", ts(200))
        .await
        .errors
        .is_empty());
    assert!(s.commit(&["w"], ts(200), ts(310)).await.error.is_none());
    let r = waiter.await.unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        (
            r.results[0].r#type,
            r.results[0].locked_with_conflict_ts,
            r.results[0].value.as_slice()
        ),
        (
            Result::LockResultLockedWithConflict as i32,
            ts(310),
            &b"held"[..]
        )
    );
}

#[tokio::test]
async fn a_release_wakes_the_oldest_waiter_first_and_the_rest_a_little_later() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let mut client = s.client.clone();
    client
        .kv_pessimistic_lock(lock_req(&ctx, &["q"], "q", ts(100), ts(100), -1))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for start in [300u64, 200, 400] {
        let mut client = s.client.clone();
        let req = lock_req(&ctx, &["q"], "q2", ts(start), ts(start), 5000);
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = client.kv_pessimistic_lock(req).await.unwrap().into_inner();
            tx.send((start, std::time::Instant::now(), r)).unwrap();
        });
        // Queue them in this order.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let released = std::time::Instant::now();
    client
        .kv_pessimistic_rollback(kvrpcpb::PessimisticRollbackRequest {
            context: Some(ctx.clone()),
            start_version: ts(100),
            for_update_ts: ts(100),
            keys: vec![b"q".to_vec()],
        })
        .await
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(rx.recv().await.unwrap());
    }
    assert_eq!(answers[0].0, 200, "the smallest start ts first");
    for (_, _, r) in &answers {
        let c = r.errors[0].conflict.as_ref().unwrap();
        assert_eq!(c.conflict_ts, ts(100));
        assert_eq!(
            c.reason,
            kvrpcpb::write_conflict::Reason::PessimisticRetry as i32
        );
    }
    let head = answers[0].1.duration_since(released);
    for (start, at, _) in &answers[1..] {
        let after = at.duration_since(released);
        assert!(
            after >= head + std::time::Duration::from_millis(15),
            "txn {start} woken {after:?} after the release, the head {head:?}"
        );
    }
}
