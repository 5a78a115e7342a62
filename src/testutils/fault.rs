//! Fault rules and the call log.
//!
//! A [`Rule`] pairs a condition (RPC method, store, region, key prefix, the nth matching call,
//! a seeded probability, how many times) with a [`Reaction`] (a region error, a gRPC status, a
//! delay before or after executing, a dropped connection, a reply lost after executing). Rules can be added and removed while clients run. Every RPC a
//! store serves is appended to the call log as a [`Call`], so tests can assert on the attempt
//! pattern a client produced.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::backoff::SplitMix64;
use crate::proto::errorpb;
use crate::GrpcCode;

/// The most calls the log keeps; when full, the older half is dropped.
pub const CALL_LOG_CAPACITY: usize = 100_000;

/// What a rule does to a matching call.
#[derive(Debug, Clone)]
pub enum Reaction {
    /// Answer with this region error instead of executing the request.
    RegionError(Box<errorpb::Error>),
    /// Fail the call with this gRPC status code (its numeric value) and message.
    Status {
        /// The gRPC status code.
        code: GrpcCode,
        /// The status message.
        message: String,
    },
    /// Wait this long, then serve the call normally.
    Delay(Duration),
    /// Cut every open connection to the store; the call gets no answer.
    DropConnection,
    /// Execute the call (its effect is applied), then cut every open connection to the store
    /// instead of answering: the client sees a broken connection after the fact, as when a
    /// reply is lost on the wire.
    LoseReply,
    /// Execute the call, then wait this long before answering: the effect is visible to
    /// other clients while the caller still waits.
    DelayReply(Duration),
    /// PD only: answer a region query (`GetRegion`, `GetPrevRegion`, `ScanRegions`,
    /// `BatchScanRegions`) as PD does when it knows no region for the key (for example a new
    /// leader that has not loaded the regions yet): success, with no region.
    NoRegion,
}

/// When a rule fires. Unset fields match anything.
#[derive(Debug, Clone, Default)]
pub struct Condition {
    pub(crate) method: Option<String>,
    pub(crate) store: Option<u64>,
    pub(crate) region: Option<u64>,
    pub(crate) key_prefix: Option<Vec<u8>>,
    pub(crate) nth: Option<u64>,
    pub(crate) probability: Option<f64>,
    pub(crate) times: Option<u64>,
}

/// A fault rule: a condition and a reaction.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) condition: Condition,
    pub(crate) reaction: Reaction,
}

impl Rule {
    /// A rule for calls of `method` (the gRPC method name, such as `"RawGet"`), or of every
    /// method with `"*"`.
    pub fn on(method: impl Into<String>) -> RuleBuilder {
        let method = method.into();
        RuleBuilder(Condition {
            method: (method != "*").then_some(method),
            ..Default::default()
        })
    }
}

/// Builds a [`Rule`]: narrow the condition, then pick the reaction.
#[derive(Debug, Clone)]
pub struct RuleBuilder(Condition);

impl RuleBuilder {
    /// Only calls served by this store.
    pub fn store(mut self, store: u64) -> Self {
        self.0.store = Some(store);
        self
    }

    /// Only calls whose context names this region.
    pub fn region(mut self, region: u64) -> Self {
        self.0.region = Some(region);
        self
    }

    /// Only calls whose first key starts with `prefix` (the key as the client sent it).
    pub fn key_prefix(mut self, prefix: impl Into<Vec<u8>>) -> Self {
        self.0.key_prefix = Some(prefix.into());
        self
    }

    /// Only the nth matching call (1-based), counted from when the rule was added.
    pub fn nth(mut self, n: u64) -> Self {
        self.0.nth = Some(n);
        self
    }

    /// Each matching call with this probability, drawn from the cluster's seeded generator.
    pub fn probability(mut self, p: f64) -> Self {
        self.0.probability = Some(p);
        self
    }

    /// Fire at most this many times, then stay inert.
    pub fn times(mut self, n: u64) -> Self {
        self.0.times = Some(n);
        self
    }

    /// Answer with a region error.
    pub fn region_error(self, error: errorpb::Error) -> Rule {
        self.then(Reaction::RegionError(Box::new(error)))
    }

    /// Fail with a gRPC status.
    pub fn status(self, code: GrpcCode, message: impl Into<String>) -> Rule {
        self.then(Reaction::Status {
            code,
            message: message.into(),
        })
    }

    /// Delay, then serve.
    pub fn delay(self, by: Duration) -> Rule {
        self.then(Reaction::Delay(by))
    }

    /// Answer PD region queries with no region.
    pub fn no_region(self) -> Rule {
        self.then(Reaction::NoRegion)
    }

    /// Cut the store's connections.
    pub fn drop_connection(self) -> Rule {
        self.then(Reaction::DropConnection)
    }

    /// Execute, then cut the store's connections instead of answering.
    pub fn lose_reply(self) -> Rule {
        self.then(Reaction::LoseReply)
    }

    /// Execute, then wait before answering.
    pub fn delay_reply(self, by: Duration) -> Rule {
        self.then(Reaction::DelayReply(by))
    }

    /// Any reaction.
    pub fn then(self, reaction: Reaction) -> Rule {
        Rule {
            condition: self.0,
            reaction,
        }
    }
}

/// Identifies an added rule, for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(pub(crate) u64);

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Served; the response carried no region error.
    Ok,
    /// Answered with a region error of this kind (`"NotLeader"`, `"EpochNotMatch"`, ...).
    RegionError(&'static str),
    /// Failed with this gRPC status code.
    Status(GrpcCode),
    /// The connection was cut.
    Dropped,
    /// Executed, then the connection was cut instead of answering.
    ReplyLost,
}

/// One RPC the cluster served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The gRPC method name (`"RawGet"`, `"KvPrewrite"`, `"GetRegion"`, ...).
    pub method: &'static str,
    /// The store that served it; 0 for PD.
    pub store: u64,
    /// The region named in the request's context (0 if none).
    pub region: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Who sent it and how, from its context.
    pub labels: Labels,
    /// Whether it came inside a BatchCommands stream.
    pub batched: bool,
    /// The request's first key, as the client sent it (empty if it has none).
    pub first_key: Vec<u8>,
}

/// The context fields of a request that label its sender and its handling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Labels {
    /// `request_source`.
    pub request_source: String,
    /// The resource group name of `resource_control_context`.
    pub resource_group: String,
    /// `resource_group_tag`.
    pub resource_group_tag: Vec<u8>,
    /// `txn_source`.
    pub txn_source: u64,
    /// `priority` (a `kvrpcpb::CommandPri`).
    pub priority: i32,
    /// `disk_full_opt` (a `kvrpcpb::DiskFullOpt`).
    pub disk_full_opt: i32,
    /// `isolation_level` (a `kvrpcpb::IsolationLevel`).
    pub isolation_level: i32,
    /// `is_retry_request`: the client may have sent this request before.
    pub is_retry_request: bool,
    /// `replica_read`: a follower may serve it.
    pub replica_read: bool,
    /// `stale_read`: a replica may serve it up to its safe ts.
    pub stale_read: bool,
    /// `resolved_locks`: transactions whose locks the reader may ignore.
    pub resolved_locks: Vec<u64>,
    /// `committed_locks`: transactions whose locked values the reader may read as committed.
    pub committed_locks: Vec<u64>,
}

impl Labels {
    pub(crate) fn of(ctx: Option<&crate::proto::kvrpcpb::Context>) -> Labels {
        let Some(ctx) = ctx else {
            return Labels::default();
        };
        Labels {
            request_source: ctx.request_source.clone(),
            resource_group: ctx
                .resource_control_context
                .as_ref()
                .map(|r| r.resource_group_name.clone())
                .unwrap_or_default(),
            resource_group_tag: ctx.resource_group_tag.clone(),
            txn_source: ctx.txn_source,
            priority: ctx.priority,
            disk_full_opt: ctx.disk_full_opt,
            isolation_level: ctx.isolation_level,
            is_retry_request: ctx.is_retry_request,
            replica_read: ctx.replica_read,
            stale_read: ctx.stale_read,
            resolved_locks: ctx.resolved_locks.clone(),
            committed_locks: ctx.committed_locks.clone(),
        }
    }
}

struct ActiveRule {
    id: RuleId,
    rule: Rule,
    matched: u64,
    fired: u64,
}

/// Rules, the call log and the seeded generator.
pub(crate) struct Faults {
    state: Mutex<FaultState>,
}

struct FaultState {
    next_id: u64,
    rules: Vec<ActiveRule>,
    calls: Vec<Call>,
    rng: SplitMix64,
}

/// What a call looks like to the rules.
pub(crate) struct CallInfo<'a> {
    pub method: &'static str,
    pub store: u64,
    pub region: u64,
    pub first_key: Option<&'a [u8]>,
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Faults {
            state: Mutex::new(FaultState {
                next_id: 1,
                rules: Vec::new(),
                calls: Vec::new(),
                rng: SplitMix64::new(seed),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add(&self, rule: Rule) -> RuleId {
        let mut s = self.lock();
        let id = RuleId(s.next_id);
        s.next_id += 1;
        s.rules.push(ActiveRule {
            id,
            rule,
            matched: 0,
            fired: 0,
        });
        id
    }

    pub(crate) fn remove(&self, id: RuleId) -> bool {
        let mut s = self.lock();
        let before = s.rules.len();
        s.rules.retain(|r| r.id != id);
        s.rules.len() != before
    }

    pub(crate) fn clear(&self) {
        self.lock().rules.clear();
    }

    /// The active rules, oldest first, with how often each has fired.
    pub(crate) fn rules(&self) -> Vec<(RuleId, Rule, u64)> {
        let s = self.lock();
        s.rules
            .iter()
            .map(|r| (r.id, r.rule.clone(), r.fired))
            .collect()
    }

    /// The reaction of the first rule that fires for this call, if any.
    pub(crate) fn react(&self, call: &CallInfo<'_>) -> Option<Reaction> {
        let mut s = self.lock();
        let FaultState { rules, rng, .. } = &mut *s;
        for active in rules.iter_mut() {
            let c = &active.rule.condition;
            let matches = c.method.as_deref().is_none_or(|m| m == call.method)
                && c.store.is_none_or(|st| st == call.store)
                && c.region.is_none_or(|r| r == call.region)
                && c.key_prefix
                    .as_deref()
                    .is_none_or(|p| call.first_key.is_some_and(|k| k.starts_with(p)));
            if !matches || c.times.is_some_and(|t| active.fired >= t) {
                continue;
            }
            active.matched += 1;
            if c.nth.is_some_and(|n| n != active.matched) {
                continue;
            }
            if let Some(p) = c.probability {
                let draw = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                if draw >= p {
                    continue;
                }
            }
            active.fired += 1;
            return Some(active.rule.reaction.clone());
        }
        None
    }

    pub(crate) fn record(&self, call: Call) {
        log::debug!(
            "{} on store {} region {}: {:?}",
            call.method,
            call.store,
            call.region,
            call.outcome
        );
        self.lock().calls.push(call);
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub(crate) fn clear_calls(&self) {
        self.lock().calls.clear();
    }
}

/// The tonic status code for one of ours.
pub(crate) fn tonic_code(code: GrpcCode) -> tonic::Code {
    tonic::Code::from_i32(code as i32)
}

/// The kind of a region error, as its field name in `errorpb.Error` (CamelCase).
pub fn region_error_kind(e: &errorpb::Error) -> &'static str {
    if e.not_leader.is_some() {
        "NotLeader"
    } else if e.region_not_found.is_some() {
        "RegionNotFound"
    } else if e.key_not_in_region.is_some() {
        "KeyNotInRegion"
    } else if e.epoch_not_match.is_some() {
        "EpochNotMatch"
    } else if e.server_is_busy.is_some() {
        "ServerIsBusy"
    } else if e.stale_command.is_some() {
        "StaleCommand"
    } else if e.store_not_match.is_some() {
        "StoreNotMatch"
    } else if e.raft_entry_too_large.is_some() {
        "RaftEntryTooLarge"
    } else if e.max_timestamp_not_synced.is_some() {
        "MaxTimestampNotSynced"
    } else if e.read_index_not_ready.is_some() {
        "ReadIndexNotReady"
    } else if e.proposal_in_merging_mode.is_some() {
        "ProposalInMergingMode"
    } else if e.data_is_not_ready.is_some() {
        "DataIsNotReady"
    } else if e.region_not_initialized.is_some() {
        "RegionNotInitialized"
    } else if e.disk_full.is_some() {
        "DiskFull"
    } else if e.recovery_in_progress.is_some() {
        "RecoveryInProgress"
    } else if e.flashback_in_progress.is_some() {
        "FlashbackInProgress"
    } else if e.flashback_not_prepared.is_some() {
        "FlashbackNotPrepared"
    } else if e.is_witness.is_some() {
        "IsWitness"
    } else if e.mismatch_peer_id.is_some() {
        "MismatchPeerId"
    } else if e.bucket_version_not_match.is_some() {
        "BucketVersionNotMatch"
    } else if e.undetermined_result.is_some() {
        "UndeterminedResult"
    } else {
        "Other"
    }
}

/// Every kind of region error [`region_error_kind`] names (but `"Other"`).
pub const REGION_ERROR_KINDS: [&str; 21] = [
    "NotLeader",
    "RegionNotFound",
    "KeyNotInRegion",
    "EpochNotMatch",
    "ServerIsBusy",
    "StaleCommand",
    "StoreNotMatch",
    "RaftEntryTooLarge",
    "MaxTimestampNotSynced",
    "ReadIndexNotReady",
    "ProposalInMergingMode",
    "DataIsNotReady",
    "RegionNotInitialized",
    "DiskFull",
    "RecoveryInProgress",
    "FlashbackInProgress",
    "FlashbackNotPrepared",
    "IsWitness",
    "MismatchPeerId",
    "BucketVersionNotMatch",
    "UndeterminedResult",
];

/// A region error of `kind` (as [`region_error_kind`] names it) about `region`, its other
/// details left empty: a `NotLeader` without a known leader, an `EpochNotMatch` without the
/// current regions (clients then reload the region from PD). `None` for an unknown kind.
pub fn region_error(kind: &str, region: u64) -> Option<errorpb::Error> {
    let region_id = region;
    let mut e = errorpb::Error {
        message: format!("{kind} injected by a fault rule"),
        ..Default::default()
    };
    match kind {
        "NotLeader" => {
            e.not_leader = Some(errorpb::NotLeader {
                region_id,
                leader: None,
            })
        }
        "RegionNotFound" => e.region_not_found = Some(errorpb::RegionNotFound { region_id }),
        "KeyNotInRegion" => {
            e.key_not_in_region = Some(errorpb::KeyNotInRegion {
                region_id,
                ..Default::default()
            })
        }
        "EpochNotMatch" => e.epoch_not_match = Some(Default::default()),
        "ServerIsBusy" => {
            e.server_is_busy = Some(errorpb::ServerIsBusy {
                reason: "injected by a fault rule".into(),
                ..Default::default()
            })
        }
        "StaleCommand" => e.stale_command = Some(Default::default()),
        "StoreNotMatch" => e.store_not_match = Some(Default::default()),
        "RaftEntryTooLarge" => {
            e.raft_entry_too_large = Some(errorpb::RaftEntryTooLarge {
                region_id,
                ..Default::default()
            })
        }
        "MaxTimestampNotSynced" => e.max_timestamp_not_synced = Some(Default::default()),
        "ReadIndexNotReady" => {
            e.read_index_not_ready = Some(errorpb::ReadIndexNotReady {
                region_id,
                ..Default::default()
            })
        }
        "ProposalInMergingMode" => {
            e.proposal_in_merging_mode = Some(errorpb::ProposalInMergingMode { region_id })
        }
        "DataIsNotReady" => {
            e.data_is_not_ready = Some(errorpb::DataIsNotReady {
                region_id,
                ..Default::default()
            })
        }
        "RegionNotInitialized" => {
            e.region_not_initialized = Some(errorpb::RegionNotInitialized { region_id })
        }
        "DiskFull" => e.disk_full = Some(Default::default()),
        "RecoveryInProgress" => {
            e.recovery_in_progress = Some(errorpb::RecoveryInProgress { region_id })
        }
        "FlashbackInProgress" => {
            e.flashback_in_progress = Some(errorpb::FlashbackInProgress {
                region_id,
                ..Default::default()
            })
        }
        "FlashbackNotPrepared" => {
            e.flashback_not_prepared = Some(errorpb::FlashbackNotPrepared { region_id })
        }
        "IsWitness" => e.is_witness = Some(errorpb::IsWitness { region_id }),
        "MismatchPeerId" => e.mismatch_peer_id = Some(Default::default()),
        "BucketVersionNotMatch" => e.bucket_version_not_match = Some(Default::default()),
        "UndeterminedResult" => e.undetermined_result = Some(Default::default()),
        _ => return None,
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &'static str, store: u64, key: &'static [u8]) -> CallInfo<'static> {
        CallInfo {
            method,
            store,
            region: 2,
            first_key: Some(key),
        }
    }

    #[test]
    fn conditions_narrow_and_times_limit() {
        let f = Faults::new(1);
        f.add(
            Rule::on("RawGet")
                .store(1)
                .key_prefix("a")
                .times(2)
                .delay(Duration::ZERO),
        );
        assert!(f.react(&call("RawPut", 1, b"a")).is_none(), "other method");
        assert!(f.react(&call("RawGet", 2, b"a")).is_none(), "other store");
        assert!(f.react(&call("RawGet", 1, b"b")).is_none(), "other key");
        assert!(f.react(&call("RawGet", 1, b"ab")).is_some());
        assert!(f.react(&call("RawGet", 1, b"ab")).is_some());
        assert!(
            f.react(&call("RawGet", 1, b"ab")).is_none(),
            "fired twice already"
        );
    }

    #[test]
    fn nth_fires_once_on_the_nth_match() {
        let f = Faults::new(1);
        f.add(
            Rule::on("*")
                .nth(3)
                .status(GrpcCode::Unavailable, "unavailable"),
        );
        let fired: Vec<bool> = (0..5)
            .map(|_| f.react(&call("RawGet", 1, b"k")).is_some())
            .collect();
        assert_eq!(fired, vec![false, false, true, false, false]);
    }

    #[test]
    fn probability_is_seeded() {
        let run = |seed| {
            let f = Faults::new(seed);
            f.add(Rule::on("*").probability(0.5).drop_connection());
            (0..64)
                .map(|_| f.react(&call("RawGet", 1, b"k")).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let hits = run(7).iter().filter(|h| **h).count();
        assert!((16..=48).contains(&hits), "{hits} of 64");
    }

    #[test]
    fn region_errors_are_built_by_the_kind_they_are_named_by() {
        for kind in REGION_ERROR_KINDS {
            let e = region_error(kind, 7).unwrap();
            assert_eq!(region_error_kind(&e), kind);
        }
        assert_eq!(
            region_error("NotLeader", 7)
                .unwrap()
                .not_leader
                .unwrap()
                .region_id,
            7
        );
        assert!(region_error("Other", 7).is_none());
        assert!(region_error("notleader", 7).is_none(), "names are exact");
    }

    #[test]
    fn rules_can_be_removed() {
        let f = Faults::new(1);
        let id = f.add(Rule::on("*").drop_connection());
        assert!(f.react(&call("RawGet", 1, b"k")).is_some());
        assert!(f.remove(id));
        assert!(!f.remove(id));
        assert!(f.react(&call("RawGet", 1, b"k")).is_none());
    }
}
