//! What to do about a region error: client-go's reactions (spec 7) as a pure function.

use crate::backoff::BackoffKind;
use crate::proto::{errorpb, metapb};
use crate::region_cache::InvalidReason;

/// The reaction to one region error.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The leader moved to this peer: update the cache and retry at once, without sleeping.
    RetryOnLeader(metapb::Peer),
    /// Retry the same request on the same region after backing off.
    Retry(BackoffKind),
    /// A replica could not serve a replica or stale read: read the same at once on the leader,
    /// as a plain read (client-go retries on the leader without backoff), first dropping the
    /// region from the cache if `invalidate` says why.
    ReadFromLeader {
        /// Why the cached region is stale, if it is.
        invalidate: Option<InvalidReason>,
    },
    /// Cache the regions the error carries, then re-split the request without sleeping.
    EpochNotMatch(Vec<metapb::Region>),
    /// Drop the region from the cache, back off, then re-split the request.
    Reshard {
        /// Why the region is dropped.
        invalidate: InvalidReason,
        /// How to wait first.
        backoff: BackoffKind,
        /// Whether the store's address must be looked up again.
        invalidate_store: bool,
    },
    /// Give up: the error goes to the caller.
    Fail,
}

fn reshard(invalidate: InvalidReason, backoff: BackoffKind) -> Action {
    Action::Reshard {
        invalidate,
        backoff,
        invalidate_store: false,
    }
}

/// Classifies a region error; `from_replica` says a follower (not the leader) answered a
/// replica or stale read.
pub fn classify(e: &errorpb::Error, from_replica: bool) -> Action {
    use BackoffKind as B;
    use InvalidReason as R;
    if let Some(nl) = &e.not_leader {
        return match &nl.leader {
            Some(leader) if leader.store_id != 0 => Action::RetryOnLeader(*leader),
            _ => reshard(R::NoLeader, B::RegionScheduling),
        };
    }
    if let Some(en) = &e.epoch_not_match {
        return if en.current_regions.is_empty() {
            reshard(R::EpochNotMatch, B::RegionMiss)
        } else {
            Action::EpochNotMatch(en.current_regions.clone())
        };
    }
    if e.region_not_found.is_some() {
        return if from_replica {
            // A replica without the region: the leader is asked once instead.
            Action::ReadFromLeader {
                invalidate: Some(R::RegionNotFound),
            }
        } else {
            reshard(R::RegionNotFound, B::RegionMiss)
        };
    }
    if e.key_not_in_region.is_some()
        || e.mismatch_peer_id.is_some()
        || e.bucket_version_not_match.is_some()
    {
        return reshard(R::Other, B::RegionMiss);
    }
    if e.store_not_match.is_some() {
        return Action::Reshard {
            invalidate: R::StoreNotFound,
            backoff: B::RegionMiss,
            invalidate_store: true,
        };
    }
    if e.server_is_busy.is_some() {
        return Action::Retry(B::TikvServerBusy);
    }
    if e.stale_command.is_some() {
        return Action::Retry(B::StaleCommand);
    }
    if e.max_timestamp_not_synced.is_some() {
        return Action::Retry(B::MaxTsNotSynced);
    }
    if e.read_index_not_ready.is_some() || e.proposal_in_merging_mode.is_some() {
        return Action::Retry(B::RegionScheduling);
    }
    if e.region_not_initialized.is_some() {
        return Action::Retry(B::RegionNotInitialized);
    }
    if e.disk_full.is_some() {
        return Action::Retry(B::TikvDiskFull);
    }
    if e.data_is_not_ready.is_some() {
        return Action::ReadFromLeader { invalidate: None };
    }
    if e.recovery_in_progress.is_some() {
        return reshard(R::Other, B::RegionRecoveryInProgress);
    }
    if e.is_witness.is_some() {
        return reshard(R::Other, B::IsWitness);
    }
    if e.raft_entry_too_large.is_some()
        || e.flashback_in_progress.is_some()
        || e.flashback_not_prepared.is_some()
        || e.undetermined_result.is_some()
    {
        return Action::Fail;
    }
    // TiKV refused to raise its max_ts that far (a timestamp far ahead of PD's): retrying
    // cannot help, and client-go fails at once. TiKV sends it as a message only.
    if e.message.contains("invalid max_ts update") {
        return Action::Fail;
    }
    reshard(R::Other, B::RegionMiss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(store: u64) -> metapb::Peer {
        metapb::Peer {
            id: store * 10,
            store_id: store,
            ..Default::default()
        }
    }

    /// One row per region error kind: the error, and client-go's reaction.
    #[test]
    fn every_region_error_kind() {
        use BackoffKind as B;
        use InvalidReason as R;
        let e = |f: fn(&mut errorpb::Error)| {
            let mut e = errorpb::Error::default();
            f(&mut e);
            e
        };
        let region = metapb::Region {
            id: 9,
            ..Default::default()
        };
        let rows: Vec<(&str, errorpb::Error, Action)> = vec![
            (
                "NotLeader with leader",
                e(|e| {
                    e.not_leader = Some(errorpb::NotLeader {
                        region_id: 1,
                        leader: Some(peer(2)),
                    })
                }),
                Action::RetryOnLeader(peer(2)),
            ),
            (
                "NotLeader without leader",
                e(|e| {
                    e.not_leader = Some(errorpb::NotLeader {
                        region_id: 1,
                        leader: None,
                    })
                }),
                reshard(R::NoLeader, B::RegionScheduling),
            ),
            (
                "EpochNotMatch with regions",
                errorpb::Error {
                    epoch_not_match: Some(errorpb::EpochNotMatch {
                        current_regions: vec![region.clone()],
                    }),
                    ..Default::default()
                },
                Action::EpochNotMatch(vec![region.clone()]),
            ),
            (
                "EpochNotMatch without regions",
                e(|e| e.epoch_not_match = Some(Default::default())),
                reshard(R::EpochNotMatch, B::RegionMiss),
            ),
            (
                "RegionNotFound",
                e(|e| e.region_not_found = Some(Default::default())),
                reshard(R::RegionNotFound, B::RegionMiss),
            ),
            (
                "KeyNotInRegion",
                e(|e| e.key_not_in_region = Some(Default::default())),
                reshard(R::Other, B::RegionMiss),
            ),
            (
                "MismatchPeerId",
                e(|e| e.mismatch_peer_id = Some(Default::default())),
                reshard(R::Other, B::RegionMiss),
            ),
            (
                "BucketVersionNotMatch",
                e(|e| e.bucket_version_not_match = Some(Default::default())),
                reshard(R::Other, B::RegionMiss),
            ),
            (
                "StoreNotMatch",
                e(|e| e.store_not_match = Some(Default::default())),
                Action::Reshard {
                    invalidate: R::StoreNotFound,
                    backoff: B::RegionMiss,
                    invalidate_store: true,
                },
            ),
            (
                "ServerIsBusy",
                e(|e| e.server_is_busy = Some(Default::default())),
                Action::Retry(B::TikvServerBusy),
            ),
            (
                "StaleCommand",
                e(|e| e.stale_command = Some(Default::default())),
                Action::Retry(B::StaleCommand),
            ),
            (
                "MaxTimestampNotSynced",
                e(|e| e.max_timestamp_not_synced = Some(Default::default())),
                Action::Retry(B::MaxTsNotSynced),
            ),
            (
                "ReadIndexNotReady",
                e(|e| e.read_index_not_ready = Some(Default::default())),
                Action::Retry(B::RegionScheduling),
            ),
            (
                "ProposalInMergingMode",
                e(|e| e.proposal_in_merging_mode = Some(Default::default())),
                Action::Retry(B::RegionScheduling),
            ),
            (
                "RegionNotInitialized",
                e(|e| e.region_not_initialized = Some(Default::default())),
                Action::Retry(B::RegionNotInitialized),
            ),
            (
                "DiskFull",
                e(|e| e.disk_full = Some(Default::default())),
                Action::Retry(B::TikvDiskFull),
            ),
            (
                "DataIsNotReady",
                e(|e| e.data_is_not_ready = Some(Default::default())),
                Action::ReadFromLeader { invalidate: None },
            ),
            (
                "RecoveryInProgress",
                e(|e| e.recovery_in_progress = Some(Default::default())),
                reshard(R::Other, B::RegionRecoveryInProgress),
            ),
            (
                "IsWitness",
                e(|e| e.is_witness = Some(Default::default())),
                reshard(R::Other, B::IsWitness),
            ),
            (
                "RaftEntryTooLarge",
                e(|e| e.raft_entry_too_large = Some(Default::default())),
                Action::Fail,
            ),
            (
                "FlashbackInProgress",
                e(|e| e.flashback_in_progress = Some(Default::default())),
                Action::Fail,
            ),
            (
                "FlashbackNotPrepared",
                e(|e| e.flashback_not_prepared = Some(Default::default())),
                Action::Fail,
            ),
            (
                "UndeterminedResult",
                e(|e| e.undetermined_result = Some(Default::default())),
                Action::Fail,
            ),
            (
                "only a message",
                e(|e| e.message = "TiKV is Closing".into()),
                reshard(R::Other, B::RegionMiss),
            ),
            (
                "InvalidMaxTsUpdate (only a message)",
                e(|e| {
                    e.message = "invalid max_ts update: 9 exceeds the limit 5, source=get".into()
                }),
                Action::Fail,
            ),
        ];
        for (name, error, expected) in rows {
            assert_eq!(classify(&error, false), expected, "{name}");
        }
        // From a replica, RegionNotFound sends the read to the leader; nothing else changes.
        let missing = e(|e| e.region_not_found = Some(Default::default()));
        assert_eq!(
            classify(&missing, true),
            Action::ReadFromLeader {
                invalidate: Some(R::RegionNotFound)
            }
        );
        let busy = e(|e| e.server_is_busy = Some(Default::default()));
        assert_eq!(classify(&busy, true), classify(&busy, false));
    }
}
