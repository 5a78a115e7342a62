//! Committing a transaction (spec 4.18a), with a state machine that never undoes a commit
//! that may have reached TiKV.
//!
//! Two-phase commit prewrites every key, takes a commit timestamp, then commits the primary
//! key: that commit is the transaction's commit point, and the secondaries follow in the
//! background. Async commit and 1PC make the prewrite itself the commit point.
//!
//! What may be undone depends on how far the commit got:
//!
//! * **Prewriting**: locks may exist, nothing is committed. A failure, a cancellation or
//!   [`Transaction::rollback`] rolls every key back.
//! * **Committing**: a request that decides the transaction (the primary's commit, or an
//!   async-commit or 1PC prewrite) may have reached TiKV. From here on only the primary's
//!   status decides; nothing is rolled back on the client's initiative. A definite answer
//!   (committed, or the primary rolled back by another transaction's lock resolution) ends the
//!   commit; anything else is [`Error::CommitUndetermined`], which is sticky: once an attempt
//!   may have taken effect, a later refusal, an exhausted budget or a failed region lookup
//!   does not make it a plain failure.
//!
//! A two-phase commit cut short in the committing state is finished: by calling
//! [`Transaction::commit`] again, or in the background when the transaction is dropped (the
//! primary's commit is sent again with the same timestamp until TiKV answers). An async-commit
//! or 1PC commit cut short is left to lock resolution, which decides it from its locks once
//! their TTL passes; calling `commit` again asks the primary for its status.

use crate::backoff::{BackoffKind, Backoffer};
use crate::error::UndeterminedCommit;
use crate::interceptor::Interceptors;
use crate::proto::kvrpcpb::{self, prewrite_request::PessimisticAction};
use crate::request::{BatchLimits, Locate, RAW_BATCH_BYTES};
use crate::timestamp::Timestamp;
use crate::{Error, Key, Result};

use super::lock::PrimaryStatus;
use super::requests::{
    background, batch_rollback, commit_keys, pessimistic_rollback, MAX_LOCK_TTL_MS, WRITE_BUDGET,
};
use super::txn::{CommitMode, Mutation, Pending, State, Transaction};
use super::Core;

/// client-go's async-commit limits: keys per transaction and total key bytes.
const ASYNC_COMMIT_KEYS: usize = 256;
const ASYNC_COMMIT_KEY_BYTES: usize = 4096;
/// client-go's async-commit safe window: how far max_commit_ts lies beyond the start.
const ASYNC_COMMIT_SAFE_WINDOW_MS: i64 = 2000;
/// client-go's base lock TTL.
const DEFAULT_LOCK_TTL_MS: u64 = 3000;
/// Above this size a transaction's lock TTL grows with its size.
const TTL_SIZE_THRESHOLD: usize = 16 * 1024;

/// How sending the primary's commit ended.
enum Primary {
    Committed(Timestamp),
    /// The primary's lock is gone without a commit record: another transaction's lock
    /// resolution rolled the transaction back.
    RolledBack(Error),
    /// Every attempt was refused without taking effect; the locks are intact.
    Refused(Error),
    /// Some attempt may have taken effect, and no later answer settled it.
    Undetermined(Timestamp, Error),
}

impl Transaction {
    /// Commits and returns the commit timestamp (`None` if the transaction wrote nothing).
    ///
    /// Two-phase commit prewrites every key, then commits the primary key (the commit
    /// point); the other keys are committed in the background. With
    /// [`super::TransactionOptions::use_async_commit`] or
    /// [`super::TransactionOptions::try_one_pc`] the prewrite is the commit point.
    ///
    /// Fails with [`Error::WriteConflict`], [`Error::KeyExists`], [`Error::AssertionFailed`]
    /// and the like when the transaction cannot commit (everything it wrote is rolled back),
    /// with [`Error::TransactionRolledBack`] when another transaction's lock resolution rolled
    /// it back first, and with [`Error::CommitUndetermined`] when a request that decides the
    /// commit may have reached TiKV without a definite answer. Nothing is rolled back then.
    ///
    /// **Cancellation.** Dropping the future (a timeout, a `select!`) before the commit point
    /// may have been sent leaves the transaction to be rolled back like an unfinished one.
    /// After that, the commit is settled by its primary alone: call `commit` again to finish
    /// it (a two-phase commit sends the primary's commit again with the same timestamp; an
    /// async-commit or 1PC one reports the primary's status), or drop the transaction, which
    /// finishes a two-phase commit in the background and leaves an async-commit or 1PC one to
    /// lock resolution. Either way the transaction ends whole or not at all.
    pub async fn commit(&mut self) -> Result<Option<Timestamp>> {
        match &self.state {
            State::Active => {}
            State::Committing(pending) => {
                let pending = pending.clone();
                return Box::pin(self.resume(pending)).await.map(Some);
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "the transaction is no longer active ({other:?})"
                )))
            }
        }
        if self.buffer.is_empty() {
            self.finish(State::Committed);
            return Ok(None);
        }
        let mut backoffer = self.operation_backoffer(WRITE_BUDGET);
        let mode = Box::pin(self.commit_mode(&mut backoffer)).await?;
        // Linearizability of async commit and 1PC: commit after every snapshot taken before
        // this commit began (fetched before anything is sent).
        let latest = match mode {
            CommitMode::TwoPc => None,
            _ if self.options.causal_consistency => None,
            _ => Some(self.core.exec.timestamp(&backoffer).await?.version()),
        };
        // The heartbeats live as long as this call: a commit cut short must not keep its
        // primary alive, or nobody could decide it once its TTL passes.
        let _heartbeat = self.heartbeat.take();
        let primary = self.primary();
        self.state = match mode {
            CommitMode::TwoPc => State::Prewriting,
            // An async-commit or 1PC prewrite commits by itself once it lands.
            _ => State::Committing(Pending {
                mode,
                primary: primary.clone(),
                commit_ts: None,
            }),
        };
        let prewritten = Box::pin(self.prewrite(mode, latest, &mut backoffer)).await;
        let (min_commit_ts, one_pc_commit_ts) = match prewritten {
            Ok(outcome) => outcome,
            Err(e) if mode != CommitMode::TwoPc && backoffer.is_uncertain() => {
                return Err(self.undetermined(&primary, None, Some(e)));
            }
            Err(e) => {
                // No key is committed, nor can be: every attempt that could commit was
                // refused.
                self.rollback_in_background();
                self.finish(State::RolledBack);
                return Err(e);
            }
        };
        if mode == CommitMode::OnePc && one_pc_commit_ts > 0 {
            self.finish(State::Committed);
            return Ok(Some(Timestamp::from_version(one_pc_commit_ts)));
        }
        if mode == CommitMode::Async && min_commit_ts > 0 {
            // Every key is prewritten: the transaction is committed at the largest
            // min_commit_ts; the locks are committed in the background.
            let commit_ts = Timestamp::from_version(min_commit_ts);
            self.finish(State::Committed);
            self.commit_in_background(self.buffer.keys().cloned().collect(), commit_ts);
            return Ok(Some(commit_ts));
        }
        // Two-phase commit, or a fallback to it: some lock is a plain one, so nothing
        // commits the transaction but its primary's commit. (Unless an attempt of the 1PC or
        // async-commit prewrite landed before the fallback: then the primary's commit finds
        // the transaction committed, at a timestamp asked of the primary below.)
        let fell_back_uncertain = mode != CommitMode::TwoPc && backoffer.is_uncertain();
        self.state = State::Prewriting;
        let mut backoffer = backoffer.next_phase(WRITE_BUDGET);
        let commit_ts = match self.core.exec.timestamp(&backoffer).await {
            Ok(ts) => ts,
            Err(e) => {
                self.rollback_in_background();
                self.finish(State::RolledBack);
                return Err(e);
            }
        };
        self.state = State::Committing(Pending {
            mode: CommitMode::TwoPc,
            primary,
            commit_ts: Some(commit_ts),
        });
        let mut sent = Box::pin(self.send_primary_commit(commit_ts, &mut backoffer)).await;
        if let (true, Primary::Committed(ts)) = (fell_back_uncertain, &sent) {
            let asked = self.committed_at(&mut backoffer).await;
            sent = Primary::Committed(asked.unwrap_or(*ts));
        }
        self.settle(sent).map(Some)
    }

    /// The timestamp the primary says the transaction committed at, if it can tell.
    async fn committed_at(&self, backoffer: &mut Backoffer) -> Option<Timestamp> {
        let status = self
            .core
            .resolver
            .primary_status(
                &self.primary(),
                self.start_version(),
                self.interceptors(),
                backoffer,
            )
            .await;
        match status {
            Ok(PrimaryStatus::Committed(ts)) => Some(Timestamp::from_version(ts)),
            _ => None,
        }
    }

    /// Sends the primary's commit of the two-phase commit in the committing state. Each
    /// timestamp it is sent with is kept in that state first, so that a commit cut short is
    /// finished with the timestamp that may have landed.
    async fn send_primary_commit(
        &mut self,
        commit_ts: Timestamp,
        backoffer: &mut Backoffer,
    ) -> Primary {
        let (core, interceptors) = (self.core.clone(), self.interceptors().clone());
        let start = self.start_version();
        let primary = self.primary();
        let state = &mut self.state;
        let mut keep = |ts| {
            if let State::Committing(pending) = state {
                pending.commit_ts = Some(ts);
            }
        };
        commit_primary(
            &core,
            &interceptors,
            start,
            &primary,
            commit_ts,
            backoffer,
            &mut keep,
        )
        .await
    }

    /// Continues a commit that may have reached TiKV (see [`Transaction::commit`]).
    async fn resume(&mut self, pending: Pending) -> Result<Timestamp> {
        self.heartbeat = None;
        let mut backoffer = self.operation_backoffer(WRITE_BUDGET);
        // The interrupted attempt may still be on its way.
        backoffer.mark_uncertain();
        match (pending.mode, pending.commit_ts) {
            (CommitMode::TwoPc, Some(commit_ts)) => {
                let sent = Box::pin(self.send_primary_commit(commit_ts, &mut backoffer)).await;
                self.settle(sent)
            }
            _ => {
                let status = self
                    .core
                    .resolver
                    .primary_status(
                        &pending.primary,
                        self.start_version(),
                        self.interceptors(),
                        &mut backoffer,
                    )
                    .await;
                match status {
                    Ok(PrimaryStatus::Committed(commit_ts)) => {
                        let commit_ts = Timestamp::from_version(commit_ts);
                        self.finish(State::Committed);
                        self.commit_in_background(self.buffer.keys().cloned().collect(), commit_ts);
                        Ok(commit_ts)
                    }
                    Ok(PrimaryStatus::RolledBack) => {
                        self.rollback_in_background();
                        self.finish(State::RolledBack);
                        Err(self.rolled_back("its primary reports it rolled back"))
                    }
                    Ok(PrimaryStatus::Undecided { .. }) => {
                        Err(self.undetermined(&pending.primary, None, None))
                    }
                    Err(e) => Err(self.undetermined(&pending.primary, None, Some(e))),
                }
            }
        }
    }

    /// Ends a two-phase commit from how sending its primary's commit ended.
    fn settle(&mut self, sent: Primary) -> Result<Timestamp> {
        let primary = self.primary();
        match sent {
            Primary::Committed(commit_ts) => {
                self.finish(State::Committed);
                let secondaries = self
                    .buffer
                    .keys()
                    .filter(|k| **k != primary)
                    .cloned()
                    .collect();
                self.commit_in_background(secondaries, commit_ts);
                Ok(commit_ts)
            }
            Primary::RolledBack(e) => {
                // The primary decided: the secondaries are rolled back too.
                self.rollback_in_background();
                self.finish(State::RolledBack);
                Err(self.rolled_back(&e.to_string()))
            }
            Primary::Refused(e) => {
                self.rollback_in_background();
                self.finish(State::RolledBack);
                Err(e)
            }
            Primary::Undetermined(_, e) if rollback_undetermined_planted() => {
                self.rollback_in_background();
                self.finish(State::RolledBack);
                Err(e)
            }
            Primary::Undetermined(commit_ts, e) => {
                // The locks stay until the transaction is finished or resolved; nothing keeps
                // them alive any more.
                self.heartbeat = None;
                self.state = State::Committing(Pending {
                    mode: CommitMode::TwoPc,
                    primary: primary.clone(),
                    commit_ts: Some(commit_ts),
                });
                Err(self.undetermined(&primary, Some(commit_ts), Some(e)))
            }
        }
    }

    /// [`Error::CommitUndetermined`] for this transaction.
    pub(super) fn undetermined(
        &self,
        primary: &[u8],
        commit_ts: Option<Timestamp>,
        cause: Option<Error>,
    ) -> Error {
        Error::CommitUndetermined(Box::new(UndeterminedCommit {
            start_ts: self.start_timestamp(),
            primary: self
                .core
                .decode(primary.to_vec())
                .unwrap_or_else(|_| Key::from(primary.to_vec())),
            commit_ts,
            cause,
        }))
    }

    fn rolled_back(&self, reason: &str) -> Error {
        Error::TransactionRolledBack {
            start_ts: self.start_timestamp(),
            reason: reason.to_owned(),
        }
    }

    /// 1PC when asked and every mutation fits one request to one region; async commit when
    /// asked and within client-go's limits; else 2PC.
    async fn commit_mode(&self, backoffer: &mut Backoffer) -> Result<CommitMode> {
        let size: usize = self
            .buffer
            .iter()
            .map(|(k, m)| k.len() + m.value_len())
            .sum();
        if self.options.try_one_pc && size <= RAW_BATCH_BYTES {
            let first = self.buffer.keys().next().expect("non-empty");
            let last = self.buffer.keys().next_back().expect("non-empty");
            let region = self.core.exec.locate(Locate::Key(first), backoffer).await?;
            if region.contains(last) {
                return Ok(CommitMode::OnePc);
            }
        }
        let key_bytes: usize = self.buffer.keys().map(Vec::len).sum();
        if self.options.async_commit
            && self.buffer.len() <= ASYNC_COMMIT_KEYS
            && key_bytes <= ASYNC_COMMIT_KEY_BYTES
        {
            return Ok(CommitMode::Async);
        }
        Ok(CommitMode::TwoPc)
    }

    /// Discards the transaction, removing anything it wrote to TiKV.
    ///
    /// Once a commit may have reached TiKV (it failed with [`Error::CommitUndetermined`], or
    /// was cancelled after the commit point may have been sent), rolling back could tear the
    /// transaction: this fails with [`Error::CommitUndetermined`] and changes nothing. Call
    /// [`Transaction::commit`] again to finish such a commit.
    pub async fn rollback(&mut self) -> Result<()> {
        match &self.state {
            State::Committed => {
                return Err(Error::InvalidArgument(
                    "the transaction has committed".into(),
                ))
            }
            State::Committing(pending) => {
                return Err(self.undetermined(&pending.primary, pending.commit_ts, None))
            }
            State::RolledBack => return Ok(()),
            State::Active => {
                let keys = self.locked.iter().cloned().collect();
                pessimistic_rollback(
                    &self.core,
                    self.interceptors(),
                    self.start_version(),
                    self.for_update_ts(),
                    keys,
                )
                .await?
            }
            State::Prewriting => {
                let keys = self.buffer.keys().cloned().collect();
                batch_rollback(&self.core, self.interceptors(), self.start_version(), keys).await?
            }
        }
        self.finish(State::RolledBack);
        Ok(())
    }

    fn mutations(&self) -> Vec<kvrpcpb::Mutation> {
        self.buffer
            .iter()
            .map(|(key, m)| {
                let (op, value) = match m {
                    Mutation::Put(v) => (kvrpcpb::Op::Put, v.clone()),
                    Mutation::Insert(v) => (kvrpcpb::Op::Insert, v.clone()),
                    Mutation::Delete => (kvrpcpb::Op::Del, Vec::new()),
                    Mutation::Lock => (kvrpcpb::Op::Lock, Vec::new()),
                };
                let assertion = match self.options.assertion_level {
                    kvrpcpb::AssertionLevel::Off => kvrpcpb::Assertion::None,
                    _ => self
                        .assertions
                        .get(key)
                        .copied()
                        .unwrap_or(kvrpcpb::Assertion::None),
                };
                kvrpcpb::Mutation {
                    op: op as i32,
                    key: key.clone(),
                    value,
                    assertion: assertion as i32,
                }
            })
            .collect()
    }

    /// The primary key: the first pessimistically locked key, else the smallest key.
    pub(super) fn primary(&self) -> Vec<u8> {
        self.primary
            .clone()
            .filter(|p| self.buffer.contains_key(p))
            .unwrap_or_else(|| {
                self.buffer
                    .keys()
                    .next()
                    .cloned()
                    .expect("a non-empty buffer")
            })
    }

    /// client-go's lock TTL: 3 s, growing with the square root of the size above 16 KiB up to
    /// 20 s, plus the time the transaction has run.
    fn lock_ttl(&self, size: usize) -> u64 {
        let mut ttl = DEFAULT_LOCK_TTL_MS;
        if size >= TTL_SIZE_THRESHOLD {
            let mib = size as f64 / (1024.0 * 1024.0);
            ttl = ((6000.0 * mib.sqrt()) as u64).clamp(DEFAULT_LOCK_TTL_MS, MAX_LOCK_TTL_MS);
        }
        ttl.saturating_add(self.age().as_millis() as u64)
    }

    /// Prewrites every mutation; returns the largest `min_commit_ts` (0 if any key fell back
    /// from async commit) and the 1PC commit ts (0 if not committed by 1PC).
    async fn prewrite(
        &self,
        mode: CommitMode,
        latest: Option<u64>,
        backoffer: &mut Backoffer,
    ) -> Result<(u64, u64)> {
        let start = self.start_version();
        let primary = self.primary();
        let mutations = self.mutations();
        let size: usize = mutations.iter().map(|m| m.key.len() + m.value.len()).sum();
        let ttl = self.lock_ttl(size);
        let txn_size = mutations.len() as u64;
        let for_update_ts = if self.options.pessimistic {
            self.for_update_ts()
        } else {
            0
        };
        let locked = &self.locked;
        let secondaries: Vec<Vec<u8>> = self
            .buffer
            .keys()
            .filter(|k| **k != primary)
            .cloned()
            .collect();
        let mut min_commit_ts = start.saturating_add(1).max(for_update_ts.saturating_add(1));
        if let Some(latest) = latest {
            min_commit_ts = min_commit_ts.max(latest.saturating_add(1));
        }
        let max_commit_ts = Timestamp::new(
            self.start_timestamp()
                .physical
                .saturating_add(self.age().as_millis() as i64)
                .saturating_add(ASYNC_COMMIT_SAFE_WINDOW_MS),
            0,
        )
        .version();
        let mutation_count = mutations.len();
        let build = |mutations: Vec<kvrpcpb::Mutation>| {
            // If the region split meanwhile, the groups are partial: never 1PC a part.
            let one_pc = mode == CommitMode::OnePc && mutations.len() == mutation_count;
            let pessimistic_actions = if for_update_ts == 0 {
                Vec::new()
            } else {
                mutations
                    .iter()
                    .map(|m| {
                        let action = if locked.contains(&m.key) {
                            PessimisticAction::DoPessimisticCheck
                        } else {
                            PessimisticAction::SkipPessimisticCheck
                        };
                        action as i32
                    })
                    .collect()
            };
            let two_pc = mode == CommitMode::TwoPc;
            kvrpcpb::PrewriteRequest {
                pessimistic_actions,
                mutations,
                primary_lock: primary.clone(),
                start_version: start,
                lock_ttl: ttl,
                txn_size,
                for_update_ts,
                use_async_commit: mode == CommitMode::Async,
                secondaries: if mode == CommitMode::Async {
                    secondaries.clone()
                } else {
                    Vec::new()
                },
                try_one_pc: one_pc,
                assertion_level: self.options.assertion_level as i32,
                min_commit_ts: if two_pc { 0 } else { min_commit_ts },
                max_commit_ts: if two_pc { 0 } else { max_commit_ts },
                ..Default::default()
            }
        };
        let limits = BatchLimits {
            max_count: usize::MAX,
            max_bytes: RAW_BATCH_BYTES,
            size: |m: &kvrpcpb::Mutation| m.key.len() + m.value.len(),
        };
        loop {
            let responses = self
                .core
                .exec
                .run_grouped(
                    mutations.clone(),
                    |m| &m.key,
                    limits,
                    self.interceptors(),
                    backoffer,
                    &build,
                )
                .await?;
            let mut locks = Vec::new();
            let mut max_min_commit = Some(0u64);
            let mut one_pc_commit_ts = 0;
            for resp in responses {
                max_min_commit = match (max_min_commit, resp.min_commit_ts) {
                    (Some(m), c) if c > 0 => Some(m.max(c)),
                    _ => None,
                };
                one_pc_commit_ts = one_pc_commit_ts.max(resp.one_pc_commit_ts);
                for e in resp.errors {
                    match e.locked {
                        // A lock of a younger transaction: an optimistic txn conflicts at once.
                        Some(lock) if lock.lock_version > start => {
                            return Err(Error::WriteConflict(Box::new(kvrpcpb::WriteConflict {
                                start_ts: start,
                                conflict_ts: lock.lock_version,
                                key: lock.key.clone(),
                                primary: lock.primary_lock.clone(),
                                ..Default::default()
                            })));
                        }
                        Some(lock) => locks.push(lock),
                        None => return Err(Error::from_key_error(e)),
                    }
                }
            }
            if locks.is_empty() {
                return Ok((max_min_commit.unwrap_or(0), one_pc_commit_ts));
            }
            // Resolving another transaction's lock says nothing about this commit's requests.
            let mut resolving = backoffer.detached();
            let outcome = self
                .core
                .resolver
                .resolve_for_write(&locks, start, self.interceptors(), &mut resolving)
                .await;
            backoffer.absorb(&resolving);
            let outcome = outcome?;
            if outcome.blocked {
                let cause = Error::KeyError(Box::new(kvrpcpb::KeyError {
                    locked: locks.into_iter().next(),
                    ..Default::default()
                }));
                let rt = &self.core.pd.config().runtime;
                backoffer.backoff(rt, BackoffKind::TxnLock, cause).await?;
            }
        }
    }

    /// Commits `keys` in the background; readers resolve any left behind.
    fn commit_in_background(&self, keys: Vec<Vec<u8>>, commit_ts: Timestamp) {
        if keys.is_empty() {
            return;
        }
        let core = self.core.clone();
        let interceptors = self.interceptors().clone();
        let start = self.start_version();
        background(
            format!("committing the secondaries of txn {start}"),
            async move { commit_keys(&core, &interceptors, start, keys, commit_ts).await },
        );
    }

    /// Rolls every key back in the background (nothing of the transaction is committed).
    pub(super) fn rollback_in_background(&self) {
        let core = self.core.clone();
        let interceptors = self.interceptors().clone();
        let start = self.start_version();
        let keys: Vec<Vec<u8>> = self.buffer.keys().cloned().collect();
        background(format!("rolling back txn {start}"), async move {
            batch_rollback(&core, &interceptors, start, keys).await
        });
    }

    /// Finishes, in the background, a commit cut short after it may have reached TiKV (the
    /// transaction is being dropped): a two-phase commit sends its primary's commit again
    /// until TiKV answers, then commits or rolls back the rest; an async-commit or 1PC one is
    /// left to lock resolution.
    pub(super) fn finish_in_background(&self, pending: &Pending) {
        let start = self.start_version();
        let (CommitMode::TwoPc, Some(commit_ts)) = (pending.mode, pending.commit_ts) else {
            log::warn!(
                "txn {start} dropped while its {:?} commit was undetermined: lock resolution will \
                 settle it",
                pending.mode
            );
            return;
        };
        let core = self.core.clone();
        let interceptors = self.interceptors().clone();
        let primary = pending.primary.clone();
        let keys: Vec<Vec<u8>> = self.buffer.keys().cloned().collect();
        let timeout = self.operation_timeout();
        background(format!("finishing the commit of txn {start}"), async move {
            let rt = &core.pd.config().runtime;
            let mut backoffer = Backoffer::new(WRITE_BUDGET).with_timeout(timeout, rt.now());
            backoffer.mark_uncertain();
            let secondaries = keys.iter().filter(|k| **k != primary).cloned().collect();
            // Nobody can resume this commit any more: the timestamps need not be kept.
            let mut forget = |_| {};
            let sent = commit_primary(
                &core,
                &interceptors,
                start,
                &primary,
                commit_ts,
                &mut backoffer,
                &mut forget,
            );
            match sent.await {
                Primary::Committed(ts) => {
                    commit_keys(&core, &interceptors, start, secondaries, ts).await
                }
                Primary::RolledBack(_) => {
                    batch_rollback(&core, &interceptors, start, secondaries).await
                }
                Primary::Refused(e) | Primary::Undetermined(_, e) => Err(e),
            }
        });
    }
}

/// Sends the primary's commit at `commit_ts` (a newer one when a reader pushed the primary's
/// min_commit_ts, handed to `keep` before it is sent) until TiKV answers definitely or the
/// budget or deadline runs out.
async fn commit_primary(
    core: &Core,
    interceptors: &Interceptors,
    start: u64,
    primary: &[u8],
    mut commit_ts: Timestamp,
    backoffer: &mut Backoffer,
    keep: &mut impl FnMut(Timestamp),
) -> Primary {
    let rt = &core.pd.config().runtime;
    let failed = |commit_ts, e: Error, backoffer: &Backoffer| {
        if backoffer.is_uncertain() {
            Primary::Undetermined(commit_ts, e)
        } else {
            Primary::Refused(e)
        }
    };
    loop {
        let req = kvrpcpb::CommitRequest {
            start_version: start,
            keys: vec![primary.to_vec()],
            commit_version: commit_ts.version(),
            ..Default::default()
        };
        let resp = match core
            .exec
            .run_at_key(primary, interceptors, backoffer, req)
            .await
        {
            Ok(resp) => resp,
            Err(e) => return failed(commit_ts, e, backoffer),
        };
        let Some(e) = resp.error else {
            return Primary::Committed(commit_ts);
        };
        if e.txn_lock_not_found.is_some() {
            // No lock and no commit record: rolled back, and no attempt can commit it now.
            return Primary::RolledBack(Error::from_key_error(e));
        }
        if e.commit_ts_expired.is_none() {
            return failed(commit_ts, Error::from_key_error(e), backoffer);
        }
        // A reader pushed the primary's min_commit_ts: commit later (the lock is still
        // there, so no earlier attempt committed it).
        let pushed = backoffer
            .backoff(rt, BackoffKind::CommitTsLag, Error::from_key_error(e))
            .await;
        if let Err(e) = pushed {
            return failed(commit_ts, e, backoffer);
        }
        commit_ts = match core.exec.timestamp(backoffer).await {
            Ok(ts) => ts,
            Err(e) => return failed(commit_ts, e, backoffer),
        };
        keep(commit_ts);
    }
}

/// Whether a simulation planted the bug of rolling back a commit whose primary may have
/// committed, when it is undetermined or cancelled (never outside one).
pub(super) fn rollback_undetermined_planted() -> bool {
    crate::rt::simulation::planted("rollback-undetermined")
}
