//! The mock TiKV's transactional write rules (spec 4.2, 4.6-4.14, gotchas 10.9-10.27), through
//! the raw generated stubs.

use std::time::{Duration, Instant};

use tikv_client::proto::kvrpcpb::prewrite_request::PessimisticAction as A;
use tikv_client::proto::kvrpcpb::write_conflict::Reason;
use tikv_client::proto::kvrpcpb::{self, Op};
use tikv_client::testutils::MockCluster;

use super::mock_txn::{abort_of, lock_req, put, store, ts, Store};
use super::util::wait_until;

fn op(op: Op, key: &str) -> kvrpcpb::Mutation {
    kvrpcpb::Mutation {
        op: op as i32,
        key: key.into(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

/// A pessimistic prewrite: `mutations` zipped with `actions`, primary the first key.
fn pessimistic(
    s: &Store,
    mutations: Vec<kvrpcpb::Mutation>,
    actions: &[A],
    start: u64,
    for_update: u64,
) -> kvrpcpb::PrewriteRequest {
    kvrpcpb::PrewriteRequest {
        context: s.ctx(),
        primary_lock: mutations[0].key.clone(),
        mutations,
        pessimistic_actions: actions.iter().map(|a| *a as i32).collect(),
        start_version: start,
        for_update_ts: for_update,
        lock_ttl: 3000,
        ..Default::default()
    }
}

async fn locks(s: &mut Store) -> Vec<kvrpcpb::LockInfo> {
    let req = kvrpcpb::ScanLockRequest {
        context: s.ctx(),
        max_version: u64::MAX,
        ..Default::default()
    };
    s.client.kv_scan_lock(req).await.unwrap().into_inner().locks
}

/// The locked keys with their lock's start ts.
async fn locked(s: &mut Store) -> Vec<(String, u64)> {
    locks(s)
        .await
        .into_iter()
        .map(|l| (String::from_utf8(l.key).unwrap(), l.lock_version))
        .collect()
}

fn keys_of(errors: &[kvrpcpb::KeyError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| String::from_utf8(e.locked.clone().expect("locked").key).unwrap())
        .collect()
}

async fn batch_rollback(s: &mut Store, keys: &[&str], start: u64) -> Option<kvrpcpb::KeyError> {
    let req = kvrpcpb::BatchRollbackRequest {
        context: s.ctx(),
        start_version: start,
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        ..Default::default()
    };
    s.client
        .kv_batch_rollback(req)
        .await
        .unwrap()
        .into_inner()
        .error
}

async fn resolve(s: &mut Store, req: kvrpcpb::ResolveLockRequest) -> Option<kvrpcpb::KeyError> {
    let req = kvrpcpb::ResolveLockRequest {
        context: s.ctx(),
        ..req
    };
    s.client
        .kv_resolve_lock(req)
        .await
        .unwrap()
        .into_inner()
        .error
}

async fn lock(s: &mut Store, req: kvrpcpb::PessimisticLockRequest) -> Vec<kvrpcpb::KeyError> {
    s.client
        .kv_pessimistic_lock(req)
        .await
        .unwrap()
        .into_inner()
        .errors
}

/// Whether `key` holds a rollback record of txn `start` (which has no lock there): asked with
/// CheckTxnStatus and `rollback_if_not_exist = false`, which answers TxnNotFound when `start`
/// left no record at all.
async fn rolled_back(s: &mut Store, key: &str, start: u64) -> bool {
    let r = s
        .status(kvrpcpb::CheckTxnStatusRequest {
            primary_key: key.into(),
            lock_ts: start,
            ..Default::default()
        })
        .await;
    if r.error.as_ref().is_some_and(|e| e.txn_not_found.is_some()) {
        return false;
    }
    assert!(
        r.error.is_none() && r.commit_version == 0 && r.lock_ttl == 0,
        "{r:?}"
    );
    true
}

#[tokio::test]
async fn more_than_twelve_optimistic_mutations_are_processed_in_key_order() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    // Two keys committed after the writer's start: the first one met is the error returned.
    s.prewrite(vec![put("k03", "x"), put("k10", "x")], "k03", ts(100))
        .await;
    s.commit(&["k03", "k10"], ts(100), ts(120)).await;
    let descending = |prefix: &str, n: usize| -> Vec<kvrpcpb::Mutation> {
        (0..n)
            .rev()
            .map(|i| put(&format!("{prefix}{i:02}"), "v"))
            .collect()
    };
    let r = s.prewrite(descending("k", 13), "k00", ts(110)).await;
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(r.errors[0].conflict.clone().unwrap().key, b"k03", "sorted");
    let r = s.prewrite(descending("k", 12), "k00", ts(110)).await;
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(
        r.errors[0].conflict.clone().unwrap().key,
        b"k10",
        "twelve are taken in request order"
    );

    // The lock list follows the same order; pessimistic requests are never sorted.
    s.prewrite(vec![put("l05", "x"), put("l08", "x")], "l05", ts(200))
        .await;
    let r = s.prewrite(descending("l", 13), "l00", ts(210)).await;
    assert_eq!(keys_of(&r.errors), ["l05", "l08"]);
    let skip = [A::SkipPessimisticCheck; 13];
    let r = s
        .prewrite_req(pessimistic(
            &s,
            descending("l", 13),
            &skip,
            ts(220),
            ts(220),
        ))
        .await;
    assert_eq!(keys_of(&r.errors), ["l08", "l05"]);
}

#[tokio::test]
async fn other_errors_beat_assertion_failures_which_beat_the_lock_list() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    s.prewrite(
        vec![put("exists", "v"), put("taken", "v")],
        "exists",
        ts(10),
    )
    .await;
    s.commit(&["exists", "taken"], ts(10), ts(20)).await;
    s.prewrite(vec![put("held", "v")], "held", ts(30)).await;
    let strict = |s: &Store, mutations| kvrpcpb::PrewriteRequest {
        context: s.ctx(),
        mutations,
        primary_lock: b"free".to_vec(),
        start_version: ts(100),
        lock_ttl: 3000,
        assertion_level: kvrpcpb::AssertionLevel::Strict as i32,
        ..Default::default()
    };
    let must_not_exist = kvrpcpb::Mutation {
        assertion: kvrpcpb::Assertion::NotExist as i32,
        ..put("exists", "v")
    };

    // An other error ends the request and comes alone, even after a lock and an assertion.
    let mutations = vec![
        put("held", "v"),
        must_not_exist.clone(),
        put("free", "v"),
        op(Op::Insert, "taken"),
    ];
    let r = s.prewrite_req(strict(&s, mutations)).await;
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(r.errors[0].already_exist.clone().unwrap().key, b"taken");

    let mutations = vec![put("held", "v"), put("free", "v"), must_not_exist];
    let r = s.prewrite_req(strict(&s, mutations)).await;
    assert_eq!(r.errors.len(), 1, "{r:?}");
    let failed = r.errors[0].assertion_failed.clone().expect("assertion");
    assert_eq!(
        (
            failed.key.as_slice(),
            failed.existing_start_ts,
            failed.existing_commit_ts
        ),
        (&b"exists"[..], ts(10), ts(20))
    );
    assert_eq!(
        locked(&mut s).await,
        [("held".to_string(), ts(30))],
        "neither wrote anything"
    );
}

#[tokio::test]
async fn a_prewrite_retried_after_its_commit_succeeds_with_the_commit_ts() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let request = |s: &Store, keys: &[&str], start: u64| kvrpcpb::PrewriteRequest {
        context: s.ctx(),
        mutations: keys.iter().map(|k| put(k, "mine")).collect(),
        primary_lock: keys[0].into(),
        start_version: start,
        lock_ttl: 3000,
        min_commit_ts: start + 1,
        ..Default::default()
    };

    // Plain 2PC: success, no timestamps.
    let plain = request(&s, &["a", "b"], ts(100));
    s.prewrite_req(plain.clone()).await;
    s.commit(&["a", "b"], ts(100), ts(120)).await;
    let r = s.prewrite_req(plain).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!((r.min_commit_ts, r.one_pc_commit_ts), (0, 0));

    // Async commit: the commit ts comes back as min_commit_ts, also when another
    // transaction has locked the key since (TiKV looks before reporting the lock).
    let async_commit = kvrpcpb::PrewriteRequest {
        use_async_commit: true,
        secondaries: vec![b"d".to_vec()],
        ..request(&s, &["c", "d"], ts(200))
    };
    let first = s.prewrite_req(async_commit.clone()).await;
    assert!(first.min_commit_ts > ts(200) && first.min_commit_ts < ts(250));
    s.commit(&["c", "d"], ts(200), ts(250)).await;
    let r = s.prewrite_req(async_commit.clone()).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.min_commit_ts, ts(250));
    s.prewrite(vec![put("c", "other")], "c", ts(300)).await;
    let only_c = kvrpcpb::PrewriteRequest {
        mutations: vec![put("c", "mine")],
        ..async_commit
    };
    let r = s.prewrite_req(only_c).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.min_commit_ts, ts(250));

    // 1PC: the same one_pc_commit_ts.
    let one_pc = kvrpcpb::PrewriteRequest {
        try_one_pc: true,
        ..request(&s, &["e"], ts(400))
    };
    let first = s.prewrite_req(one_pc.clone()).await;
    assert!(first.one_pc_commit_ts > ts(400));
    let r = s.prewrite_req(one_pc).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.one_pc_commit_ts, first.one_pc_commit_ts);

    assert_eq!(
        locked(&mut s).await,
        [("c".to_string(), ts(300))],
        "the retries wrote nothing"
    );
}

#[tokio::test]
async fn an_optimistic_prewrite_over_its_own_pessimistic_lock_is_lock_type_not_match() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    assert!(
        lock(&mut s, lock_req(&ctx, &["k"], "k", ts(100), ts(100), -1))
            .await
            .is_empty()
    );
    let r = s.prewrite(vec![put("k", "v")], "k", ts(100)).await;
    assert!(
        abort_of(r.errors.first()).contains("LockTypeNotMatch"),
        "{r:?}"
    );
    let kept = locks(&mut s).await;
    assert_eq!(kept[0].lock_type, Op::PessimisticLock as i32);
}

#[tokio::test]
async fn a_duplicate_prewrite_writes_nothing_and_repeats_its_lock_min_commit_ts() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let async_commit =
        |s: &Store, keys: &[&str], start: u64, value: &str| kvrpcpb::PrewriteRequest {
            context: s.ctx(),
            mutations: keys.iter().map(|k| put(k, value)).collect(),
            primary_lock: keys[0].into(),
            secondaries: keys[1..].iter().map(|k| k.as_bytes().to_vec()).collect(),
            start_version: start,
            lock_ttl: 3000,
            use_async_commit: true,
            min_commit_ts: start + 1,
            ..Default::default()
        };
    let first = s
        .prewrite_req(async_commit(&s, &["a"], ts(100), "first"))
        .await;
    // A read raises max_ts; the duplicate still answers the lock's min_commit_ts.
    s.get("a", ts(500)).await;
    let again = s
        .prewrite_req(async_commit(&s, &["a"], ts(100), "second"))
        .await;
    assert!(again.errors.is_empty(), "{again:?}");
    assert_eq!(again.min_commit_ts, first.min_commit_ts);
    assert!(again.min_commit_ts < ts(500));
    s.commit(&["a"], ts(100), ts(600)).await;
    assert_eq!(s.get("a", ts(700)).await.value, b"first");

    // A duplicate of a plain lock turns async commit off for the rest of the request.
    s.prewrite(vec![put("p", "v")], "p", ts(800)).await;
    let r = s
        .prewrite_req(async_commit(&s, &["p", "q"], ts(800), "v"))
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.min_commit_ts, 0);
    let q = locks(&mut s).await.into_iter().find(|l| l.key == b"q");
    let q = q.expect("q locked");
    assert!(!q.use_async_commit);
    assert_eq!(
        q.min_commit_ts,
        ts(800) + 1,
        "the request's, not a computed one"
    );
}

#[tokio::test]
async fn check_not_exists_checks_without_locking_and_is_refused_in_a_pessimistic_prewrite() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    s.prewrite(vec![put("taken", "v")], "taken", ts(10)).await;
    s.commit(&["taken"], ts(10), ts(20)).await;
    let r = s
        .prewrite(
            vec![put("a", "v"), op(Op::CheckNotExists, "taken")],
            "a",
            ts(100),
        )
        .await;
    assert_eq!(r.errors[0].already_exist.clone().unwrap().key, b"taken");
    let r = s
        .prewrite(
            vec![put("a", "v"), op(Op::CheckNotExists, "free")],
            "a",
            ts(110),
        )
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        locked(&mut s).await,
        [("a".to_string(), ts(110))],
        "no lock on the checked key"
    );

    let req = pessimistic(
        &s,
        vec![op(Op::CheckNotExists, "free")],
        &[A::SkipPessimisticCheck],
        ts(200),
        ts(200),
    );
    let r = s.prewrite_req(req).await;
    assert!(
        abort_of(r.errors.first()).contains("cannot handle checkNotExists in pessimistic prewrite"),
        "{r:?}"
    );
}

#[tokio::test]
async fn do_pessimistic_check_without_its_lock_passes_only_if_nothing_was_written_since_start() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    s.prewrite(vec![put("held", "v")], "held", ts(50)).await;
    for (key, start, commit) in [
        ("older", ts(70), ts(80)),
        ("edge", ts(90), ts(100)),
        ("newer", ts(120), ts(130)),
    ] {
        s.prewrite(vec![put(key, "v")], key, start).await;
        s.commit(&[key], start, commit).await;
    }
    let check = |s: &Store, key: &str| {
        pessimistic(
            s,
            vec![put(key, "mine")],
            &[A::DoPessimisticCheck],
            ts(100),
            ts(140),
        )
    };
    // Another transaction's lock, or a write at or after start ts: the lock is gone.
    for key in ["held", "edge", "newer"] {
        let r = s.prewrite_req(check(&s, key)).await;
        assert!(
            abort_of(r.errors.first()).contains("PessimisticLockNotFound"),
            "{key}: {r:?}"
        );
    }
    // Nothing since start: the lock is "amended", written as if it had been there.
    let r = s.prewrite_req(check(&s, "older")).await;
    assert!(r.errors.is_empty(), "{r:?}");
    let written: Vec<(Vec<u8>, u64, u64)> = locks(&mut s)
        .await
        .into_iter()
        .map(|l| (l.key, l.lock_version, l.lock_for_update_ts))
        .collect();
    assert_eq!(
        written,
        [
            (b"held".to_vec(), ts(50), 0),
            (b"older".to_vec(), ts(100), ts(140))
        ]
    );
}

#[tokio::test]
async fn do_constraint_check_is_a_lazy_uniqueness_check() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    for (key, start, commit) in [("taken", ts(10), ts(20)), ("newer", ts(120), ts(130))] {
        s.prewrite(vec![put(key, "v")], key, start).await;
        s.commit(&[key], start, commit).await;
    }
    let req = |s: &Store, m, action| pessimistic(s, vec![m], &[action], ts(100), ts(140));
    let r = s
        .prewrite_req(req(&s, op(Op::Insert, "taken"), A::DoConstraintCheck))
        .await;
    assert_eq!(r.errors[0].already_exist.clone().unwrap().key, b"taken");
    let r = s
        .prewrite_req(req(&s, put("newer", "v"), A::DoConstraintCheck))
        .await;
    let c = r.errors[0].conflict.clone().expect("conflict");
    assert_eq!(
        (c.start_ts, c.conflict_ts, c.conflict_commit_ts, c.reason),
        (
            ts(100),
            ts(120),
            ts(130),
            Reason::LazyUniquenessCheck as i32
        )
    );
    // Without DO_CONSTRAINT_CHECK (and not a retry) nothing is checked.
    let r = s
        .prewrite_req(req(&s, op(Op::Insert, "taken"), A::SkipPessimisticCheck))
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
}

#[tokio::test]
async fn a_pessimistic_prewrite_keeps_the_larger_for_update_ts_and_ttl_of_the_lock() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let start = ts(100);
    for (key, for_update) in [("a", ts(120)), ("b", ts(105))] {
        assert!(
            lock(&mut s, lock_req(&ctx, &[key], "a", start, for_update, -1))
                .await
                .is_empty()
        );
    }
    let check = [A::DoPessimisticCheck, A::DoPessimisticCheck];
    let req = pessimistic(
        &s,
        vec![put("a", "v"), put("b", "v")],
        &check,
        start,
        ts(110),
    );
    assert!(s.prewrite_req(req).await.errors.is_empty());
    let written: Vec<(i32, u64, u64)> = locks(&mut s)
        .await
        .into_iter()
        .map(|l| (l.lock_type, l.lock_for_update_ts, l.lock_ttl))
        .collect();
    let put_lock = Op::Put as i32;
    // lock_req asks for a 20 s TTL, the prewrite for 3 s.
    assert_eq!(
        written,
        [(put_lock, ts(120), 20_000), (put_lock, ts(110), 20_000)]
    );
}

#[tokio::test]
async fn a_prewrite_retried_after_a_rollback_fails() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    // Optimistic: the own rollback as newest record is SelfRolledBack.
    s.prewrite(vec![put("a", "v"), put("b", "v")], "a", ts(100))
        .await;
    assert!(batch_rollback(&mut s, &["a", "b"], ts(100)).await.is_none());
    let r = s.prewrite(vec![put("a", "v")], "a", ts(100)).await;
    let c = r.errors[0].conflict.clone().expect("conflict");
    assert_eq!(
        (c.conflict_ts, c.conflict_commit_ts, c.reason),
        (ts(100), ts(100), Reason::SelfRolledBack as i32)
    );
    // Under a newer commit it is an ordinary conflict.
    s.prewrite(vec![put("b", "w")], "b", ts(150)).await;
    s.commit(&["b"], ts(150), ts(160)).await;
    let r = s.prewrite(vec![put("b", "v")], "a", ts(100)).await;
    let c = r.errors[0].conflict.clone().expect("conflict");
    assert_eq!(
        (c.conflict_commit_ts, c.reason),
        (ts(160), Reason::Optimistic as i32)
    );

    // Pessimistic: the locked key's lock is gone.
    assert!(
        lock(&mut s, lock_req(&ctx, &["p"], "p", ts(200), ts(200), -1))
            .await
            .is_empty()
    );
    assert!(batch_rollback(&mut s, &["p"], ts(200)).await.is_none());
    let r = s.prewrite_locked("p", "v", ts(200)).await;
    assert!(
        abort_of(r.errors.first()).contains("PessimisticLockNotFound"),
        "{r:?}"
    );
    assert!(locks(&mut s).await.is_empty());
}

#[tokio::test]
async fn batch_rollback_and_lite_resolve_rollbacks_are_unprotected_except_on_a_primary_lock() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    // Rollbacks for missing locks: BatchRollback and lite ResolveLock write unprotected ones,
    // CheckTxnStatus a protected one.
    assert!(batch_rollback(&mut s, &["m"], ts(100)).await.is_none());
    let lite = kvrpcpb::ResolveLockRequest {
        start_version: ts(110),
        keys: vec![b"n".to_vec()],
        ..Default::default()
    };
    assert!(resolve(&mut s, lite).await.is_none());
    s.status(kvrpcpb::CheckTxnStatusRequest {
        primary_key: b"o".to_vec(),
        lock_ts: ts(120),
        rollback_if_not_exist: true,
        ..Default::default()
    })
    .await;
    for (key, start) in [("m", ts(100)), ("n", ts(110)), ("o", ts(120))] {
        assert!(rolled_back(&mut s, key, start).await, "{key}");
    }
    // Existing locks: protected on the primary only.
    s.prewrite(vec![put("p", "v"), put("s", "v")], "p", ts(130))
        .await;
    assert!(batch_rollback(&mut s, &["p", "s"], ts(130)).await.is_none());
    // A later unprotected rollback collapses the unprotected one below it.
    let all = ["m", "n", "o", "p", "s"];
    assert!(batch_rollback(&mut s, &all, ts(200)).await.is_none());
    let mut kept = Vec::new();
    for (key, start) in [
        ("m", ts(100)),
        ("n", ts(110)),
        ("o", ts(120)),
        ("p", ts(130)),
        ("s", ts(130)),
    ] {
        kept.push(rolled_back(&mut s, key, start).await);
    }
    assert_eq!(kept, [false, false, true, true, false]);
}

#[tokio::test]
async fn an_unprotected_rollback_on_another_transactions_commit_at_its_ts_writes_nothing() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    // "k" committed at exactly the start ts of the transaction rolled back.
    let clash = ts(150);
    s.prewrite(vec![put("k", "v"), put("j", "v")], "k", ts(100))
        .await;
    s.commit(&["k", "j"], ts(100), clash).await;
    assert!(batch_rollback(&mut s, &["k"], clash).await.is_none());
    assert!(!rolled_back(&mut s, "k", clash).await, "no record, no flag");
    // A protected one flags the commit record instead.
    s.status(kvrpcpb::CheckTxnStatusRequest {
        primary_key: b"j".to_vec(),
        lock_ts: clash,
        rollback_if_not_exist: true,
        ..Default::default()
    })
    .await;
    assert!(rolled_back(&mut s, "j", clash).await);
    for key in ["k", "j"] {
        let got = s.get(key, ts(200)).await;
        assert_eq!((got.value.as_slice(), got.commit_ts), (&b"v"[..], clash));
    }
}

#[tokio::test]
async fn pessimistic_rollback_removes_only_its_own_pessimistic_locks_up_to_its_for_update_ts() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let start = ts(100);
    for (key, txn, for_update) in [
        ("p", start, ts(120)),
        ("w", start, start),
        ("o", ts(200), ts(200)),
    ] {
        assert!(
            lock(&mut s, lock_req(&ctx, &[key], key, txn, for_update, -1))
                .await
                .is_empty()
        );
    }
    // "w" is prewritten: no longer a pessimistic lock.
    assert!(s.prewrite_locked("w", "v", start).await.errors.is_empty());
    let rollback = |s: &Store, for_update_ts| kvrpcpb::PessimisticRollbackRequest {
        context: s.ctx(),
        start_version: start,
        for_update_ts,
        keys: ["p", "w", "o", "missing"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect(),
    };
    for (for_update, left) in [
        (ts(110), ["o", "p", "w"].as_slice()),
        (ts(120), &["o", "w"]),
    ] {
        let r = s
            .client
            .kv_pessimistic_rollback(rollback(&s, for_update))
            .await
            .unwrap()
            .into_inner();
        assert!(r.errors.is_empty(), "{r:?}");
        let keys: Vec<String> = locked(&mut s).await.into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, left, "for_update_ts {for_update}");
    }
}

#[tokio::test]
async fn other_transactions_rollbacks_newer_than_for_update_ts_are_lock_conflicts() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    assert!(batch_rollback(&mut s, &["k"], ts(300)).await.is_none());
    let errors = lock(&mut s, lock_req(&ctx, &["k"], "k", ts(100), ts(200), -1)).await;
    let c = errors[0].conflict.clone().expect("conflict");
    assert_eq!(
        (c.start_ts, c.conflict_ts, c.conflict_commit_ts, c.reason),
        (ts(100), ts(300), ts(300), Reason::PessimisticRetry as i32)
    );
    assert!(
        lock(&mut s, lock_req(&ctx, &["k"], "k", ts(100), ts(300), -1))
            .await
            .is_empty()
    );

    // Its own rollback, even below a newer commit, is PessimisticLockRolledBack, but a
    // commit newer than for_update_ts is checked first.
    assert!(batch_rollback(&mut s, &["j"], ts(400)).await.is_none());
    s.prewrite(vec![put("j", "v")], "j", ts(450)).await;
    s.commit(&["j"], ts(450), ts(460)).await;
    let errors = lock(&mut s, lock_req(&ctx, &["j"], "j", ts(400), ts(455), -1)).await;
    assert_eq!(
        errors[0].conflict.clone().unwrap().conflict_commit_ts,
        ts(460)
    );
    let errors = lock(&mut s, lock_req(&ctx, &["j"], "j", ts(400), ts(470), -1)).await;
    assert!(
        abort_of(errors.first()).contains("PessimisticLockRolledBack"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_zero_wait_timeout_waits_the_server_default_and_longer_ones_are_capped_by_it() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    assert!(
        lock(&mut s, lock_req(&ctx, &["k"], "k", ts(100), ts(100), -1))
            .await
            .is_empty()
    );
    let waiter = |start: u64, wait_ms: i64| {
        let mut client = s.client.clone();
        let req = lock_req(&ctx, &["k"], "k", start, start, wait_ms);
        tokio::spawn(async move {
            let begun = Instant::now();
            let r = client.kv_pessimistic_lock(req).await.unwrap().into_inner();
            (r, begun.elapsed())
        })
    };
    // Both wait at the same time: about 1 s in all.
    let (zero, long) = (waiter(ts(200), 0), waiter(ts(300), 60_000));
    for (label, waited) in [("0", zero), ("60 s", long)] {
        let (r, took) = waited.await.unwrap();
        assert_eq!(
            r.errors[0].locked.clone().expect(label).lock_version,
            ts(100)
        );
        assert!(
            (Duration::from_millis(950)..Duration::from_millis(3000)).contains(&took),
            "wait_timeout {label}: {took:?}"
        );
    }
}

#[tokio::test]
async fn lite_resolve_needs_the_lock_to_commit_while_a_region_resolve_skips_missing_keys() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    s.prewrite(vec![put("a", "v"), put("b", "v")], "a", ts(100))
        .await;
    let commit = |keys: &[&str]| kvrpcpb::ResolveLockRequest {
        start_version: ts(100),
        commit_version: ts(150),
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        ..Default::default()
    };
    let e = resolve(&mut s, commit(&["a", "gone"]))
        .await
        .expect("error");
    assert_eq!(e.txn_lock_not_found.unwrap().key, b"gone");
    assert_eq!(
        locked(&mut s).await.len(),
        2,
        "a failed request commits nothing"
    );
    // The region-wide form commits what is locked and says nothing about the rest.
    assert!(resolve(&mut s, commit(&[])).await.is_none());
    assert!(locks(&mut s).await.is_empty());
    assert_eq!(s.get("b", ts(200)).await.value, b"v");

    // Rolling back: region-wide leaves keys without a lock alone; lite writes a rollback.
    s.prewrite(vec![put("c", "v")], "c", ts(300)).await;
    let rollback = |keys: &[&str]| kvrpcpb::ResolveLockRequest {
        start_version: ts(300),
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        ..Default::default()
    };
    assert!(resolve(&mut s, rollback(&[])).await.is_none());
    assert!(rolled_back(&mut s, "c", ts(300)).await);
    assert!(!rolled_back(&mut s, "gone", ts(300)).await);
    assert!(resolve(&mut s, rollback(&["gone"])).await.is_none());
    assert!(rolled_back(&mut s, "gone", ts(300)).await);
}

/// Waits until `want` lock requests wait.
async fn until_waiting(cluster: &MockCluster, want: usize) {
    let what = format!("waiting lock requests to become {want}");
    wait_until(&what, || cluster.waiting_lock_requests(), |n| *n == want).await;
}

#[tokio::test]
async fn a_cancelled_lock_wait_leaves_no_queue_entry_or_wait_for_edge() {
    let cluster = MockCluster::builder().stores(1).start().await.unwrap();
    let mut s = store(&cluster).await;
    let ctx = s.ctx.clone();
    let (t1, t2) = (ts(100), ts(200));
    for (key, t) in [("a", t1), ("b", t2)] {
        let held = s
            .client
            .kv_pessimistic_lock(lock_req(&ctx, &[key], key, t, t, -1))
            .await
            .unwrap()
            .into_inner();
        assert!(held.errors.is_empty(), "{held:?}");
    }
    // t2 waits for t1 on a, then its client gives up: the call is dropped mid-wait.
    let mut client = s.client.clone();
    let waiting_ctx = ctx.clone();
    let waiter = tokio::spawn(async move {
        client
            .kv_pessimistic_lock(lock_req(&waiting_ctx, &["a"], "b", t2, t2, 1000))
            .await
    });
    until_waiting(&cluster, 1).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    until_waiting(&cluster, 0).await;

    // t1 now waiting for t2 on b closes no cycle: t2 waits for nothing any more.
    let r = s
        .client
        .kv_pessimistic_lock(lock_req(&ctx, &["b"], "a", t1, t1, 100))
        .await
        .unwrap()
        .into_inner();
    assert!(r.errors[0].deadlock.is_none(), "false deadlock: {r:?}");
    assert!(r.errors[0].locked.is_some(), "a lock wait timeout: {r:?}");
    until_waiting(&cluster, 0).await;
}
