//! The mock TiKV's pipelined DML (spec 4.17): KvFlush generations and KvBufferBatchGet,
//! through the raw generated stubs.

use tikv_client::proto::kvrpcpb::{self, Op};
use tikv_client::proto::tikvpb::tikv_client::TikvClient;
use tikv_client::testutils::MockCluster;
use tonic::transport::Channel;

use super::mock_txn::ts;
use super::util::{tikv, txn_ctx_for};

fn mutation(op: Op, key: &str, value: &str) -> kvrpcpb::Mutation {
    kvrpcpb::Mutation {
        op: op as i32,
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

struct Txn {
    client: TikvClient<Channel>,
    ctx: kvrpcpb::Context,
    start: u64,
}

impl Txn {
    async fn flush(
        &mut self,
        generation: u64,
        mutations: Vec<kvrpcpb::Mutation>,
    ) -> kvrpcpb::FlushResponse {
        let req = kvrpcpb::FlushRequest {
            context: Some(self.ctx.clone()),
            mutations,
            primary_key: b"a".to_vec(),
            start_ts: self.start,
            generation,
            lock_ttl: 3000,
            ..Default::default()
        };
        let resp = self.client.kv_flush(req).await.unwrap().into_inner();
        assert!(resp.region_error.is_none(), "{resp:?}");
        resp
    }

    /// The transaction's own flushed writes, as (key, value) pairs.
    async fn buffered(&mut self, keys: &[&str]) -> Vec<(String, String)> {
        let req = kvrpcpb::BufferBatchGetRequest {
            context: Some(self.ctx.clone()),
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            version: self.start,
        };
        let resp = self
            .client
            .kv_buffer_batch_get(req)
            .await
            .unwrap()
            .into_inner();
        assert!(
            resp.error.is_none() && resp.region_error.is_none(),
            "{resp:?}"
        );
        resp.pairs
            .into_iter()
            .map(|p| {
                assert!(p.error.is_none(), "{p:?}");
                (
                    String::from_utf8(p.key).unwrap(),
                    String::from_utf8(p.value).unwrap(),
                )
            })
            .collect()
    }

    /// Every lock in the region.
    async fn locks(&mut self) -> Vec<kvrpcpb::LockInfo> {
        let req = kvrpcpb::ScanLockRequest {
            context: Some(self.ctx.clone()),
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

    async fn get(&mut self, key: &str, version: u64) -> kvrpcpb::GetResponse {
        let req = kvrpcpb::GetRequest {
            context: Some(self.ctx.clone()),
            key: key.into(),
            version,
            ..Default::default()
        };
        self.client.kv_get(req).await.unwrap().into_inner()
    }
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn flushes_write_locks_by_generation_and_commit_like_prewrites() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let (ctx, leader) = txn_ctx_for(&cluster, b"a");
    let client = tikv(&cluster, leader).await;
    let mut t = Txn {
        client: client.clone(),
        ctx: ctx.clone(),
        start: ts(10),
    };

    let r = t.flush(0, vec![mutation(Op::Put, "a", "v0")]).await;
    assert!(
        r.errors[0]
            .abort
            .contains("generation should be greater than 0"),
        "{r:?}"
    );

    let r = t
        .flush(
            1,
            vec![mutation(Op::Put, "a", "v1"), mutation(Op::Put, "b", "v1")],
        )
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        t.buffered(&["b", "a", "a", "c"]).await,
        pairs(&[("a", "v1"), ("b", "v1")])
    );

    // A newer generation overwrites; an older one arriving late is ignored.
    t.flush(
        3,
        vec![mutation(Op::Put, "a", "v3"), mutation(Op::Del, "b", "")],
    )
    .await;
    t.flush(2, vec![mutation(Op::Put, "a", "v2")]).await;
    assert_eq!(
        t.buffered(&["a", "b"]).await,
        pairs(&[("a", "v3"), ("b", "")]),
        "a deletion reads as an empty value"
    );
    let locks = t.locks().await;
    let a = &locks[0];
    assert_eq!(
        (a.key.as_slice(), a.txn_size, a.min_commit_ts, a.lock_ttl),
        (&b"a"[..], u64::MAX, ts(10) + 1, 3000)
    );

    // Heartbeats push a flushed primary's min_commit_ts (never a prewrite lock's).
    let beat = |primary: &str, start: u64| kvrpcpb::TxnHeartBeatRequest {
        context: Some(ctx.clone()),
        primary_lock: primary.into(),
        start_version: start,
        advise_lock_ttl: 5000,
        min_commit_ts: ts(12),
        ..Default::default()
    };
    let r = t
        .client
        .kv_txn_heart_beat(beat("a", ts(10)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.lock_ttl, 5000);
    let prewritten = kvrpcpb::PrewriteRequest {
        context: Some(ctx.clone()),
        mutations: vec![mutation(Op::Put, "p", "v")],
        primary_lock: b"p".to_vec(),
        start_version: ts(8),
        lock_ttl: 3000,
        ..Default::default()
    };
    t.client.kv_prewrite(prewritten).await.unwrap();
    t.client.kv_txn_heart_beat(beat("p", ts(8))).await.unwrap();
    let min_commit_ts = |locks: &[kvrpcpb::LockInfo], key: &[u8]| {
        locks.iter().find(|l| l.key == key).map(|l| l.min_commit_ts)
    };
    let locks = t.locks().await;
    assert_eq!(min_commit_ts(&locks, b"a"), Some(ts(12)));
    assert_eq!(min_commit_ts(&locks, b"p"), Some(0));
    t.client
        .kv_batch_rollback(kvrpcpb::BatchRollbackRequest {
            context: Some(ctx.clone()),
            start_version: ts(8),
            keys: vec![b"p".to_vec()],
            ..Default::default()
        })
        .await
        .unwrap();

    // Another transaction's lock is reported, and the other keys are written anyway.
    let mut other = Txn {
        client: client.clone(),
        ctx: ctx.clone(),
        start: ts(5),
    };
    other.flush(1, vec![mutation(Op::Put, "c", "theirs")]).await;
    let r = t
        .flush(
            4,
            vec![mutation(Op::Put, "c", "x"), mutation(Op::Put, "d", "x")],
        )
        .await;
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(r.errors[0].locked.as_ref().unwrap().lock_version, ts(5));
    assert_eq!(t.buffered(&["c", "d"]).await, pairs(&[("d", "x")]));
    // An insert sees the transaction's own flushed value.
    let r = t.flush(5, vec![mutation(Op::Insert, "a", "again")]).await;
    assert!(r.errors[0].already_exist.is_some(), "{r:?}");

    // Flushed locks commit like prewrite locks.
    let commit = t
        .client
        .kv_commit(kvrpcpb::CommitRequest {
            context: Some(ctx.clone()),
            start_version: ts(10),
            keys: vec![b"a".to_vec(), b"b".to_vec(), b"d".to_vec()],
            commit_version: ts(20),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(commit.error.is_none(), "{commit:?}");
    assert_eq!(t.get("a", ts(30)).await.value, b"v3");
    assert!(t.get("b", ts(30)).await.not_found);
    assert_eq!(t.get("d", ts(30)).await.value, b"x");
    // A flush retried after the commit succeeds and writes nothing.
    let r = t.flush(6, vec![mutation(Op::Put, "a", "late")]).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(t.get("a", ts(30)).await.value, b"v3");
    // A transaction that started before that commit conflicts.
    let mut older = Txn {
        client,
        ctx,
        start: ts(15),
    };
    let r = older.flush(1, vec![mutation(Op::Put, "a", "old")]).await;
    let conflict = r.errors[0].conflict.clone().expect("write conflict");
    assert_eq!(conflict.conflict_commit_ts, ts(20));
}
