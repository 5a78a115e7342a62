//! The PD client: cluster membership and, in time, timestamps, regions, stores and safe points.
//!
//! [`PdClient::connect`] asks every configured endpoint for the cluster's members (PD's
//! `GetMembers`, which is answered without a cluster id), checks that they all belong to one
//! cluster, and connects to the leader's first client URL, as client-go's PD client does.

use std::time::Duration;

use crate::observe;
use crate::proto::pdpb::{self, pd_client::PdClient as PdGrpc};
use crate::transport::{self, Channel};
use crate::{Config, Error, Result};

/// A PD server as `GetMembers` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's name.
    pub name: String,
    /// The member's id.
    pub id: u64,
    /// The URLs clients reach it at.
    pub client_urls: Vec<String>,
}

impl From<pdpb::Member> for Member {
    fn from(m: pdpb::Member) -> Self {
        Member {
            name: m.name,
            id: m.member_id,
            client_urls: m.client_urls,
        }
    }
}

/// A connection to the PD leader of one cluster.
#[derive(Debug, Clone)]
pub struct PdClient {
    cluster_id: u64,
    leader: Member,
    members: Vec<Member>,
    client: PdGrpc<Channel>,
    config: Config,
}

impl PdClient {
    /// Discovers the cluster through `endpoints` (`host:port` or URLs) and connects to its
    /// leader.
    ///
    /// Fails with [`Error::InvalidArgument`] when no endpoint is given, with
    /// [`Error::ClusterIdMismatch`] when endpoints belong to different clusters, and with the
    /// last endpoint's error when none answers.
    pub async fn connect(endpoints: &[impl AsRef<str>], config: &Config) -> Result<PdClient> {
        config.validate()?;
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no PD endpoint given".into()));
        }
        let mut found: Option<(String, pdpb::GetMembersResponse)> = None;
        let mut last_error = None;
        for endpoint in endpoints {
            let endpoint = endpoint.as_ref();
            match get_members_from(endpoint, config).await {
                Ok(resp) => {
                    let id = cluster_id(&resp);
                    if let Some((_, first)) = &found {
                        let expected = cluster_id(first);
                        if id != expected {
                            return Err(Error::ClusterIdMismatch {
                                expected,
                                got: id,
                                address: endpoint.to_owned(),
                            });
                        }
                    } else {
                        found = Some((endpoint.to_owned(), resp));
                    }
                }
                Err(e) => {
                    log::warn!("PD endpoint {endpoint} did not answer GetMembers: {e}");
                    last_error = Some(e);
                }
            }
        }
        let Some((endpoint, resp)) = found else {
            return Err(last_error.unwrap_or_else(|| Error::Pd("no PD endpoint answered".into())));
        };
        let cluster_id = cluster_id(&resp);
        if cluster_id == 0 {
            return Err(Error::UnexpectedResponse(format!(
                "PD {endpoint} reported cluster id 0"
            )));
        }
        let leader = leader_of(&endpoint, resp.leader)?;
        let members = resp.members.into_iter().map(Member::from).collect();
        let channel = transport::connect(&leader.client_urls[0], config).await?;
        log::info!(
            "connected to PD leader {} at {} (cluster {cluster_id})",
            leader.name,
            leader.client_urls[0]
        );
        Ok(PdClient {
            cluster_id,
            leader,
            members,
            client: grpc_client(channel, config),
            config: config.clone(),
        })
    }

    /// The cluster id every request to PD must carry.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The PD leader this client talks to.
    pub fn leader(&self) -> &Member {
        &self.leader
    }

    /// Every PD member, as the leader reported them at connection time.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Asks the leader for the current membership again. If another member has become leader,
    /// reconnects to it. Fails with [`Error::ClusterIdMismatch`] if the answer comes from another
    /// cluster.
    pub async fn refresh(&mut self) -> Result<()> {
        let address = self.leader.client_urls[0].clone();
        let resp = get_members(&mut self.client, &address, &self.config).await?;
        let got = cluster_id(&resp);
        if got != self.cluster_id {
            return Err(Error::ClusterIdMismatch {
                expected: self.cluster_id,
                got,
                address,
            });
        }
        let leader = leader_of(&address, resp.leader)?;
        if leader.client_urls[0] != address {
            log::info!(
                "PD leader changed from {} to {}",
                self.leader.name,
                leader.name
            );
            let channel = transport::connect(&leader.client_urls[0], &self.config).await?;
            self.client = grpc_client(channel, &self.config);
        }
        self.leader = leader;
        self.members = resp.members.into_iter().map(Member::from).collect();
        Ok(())
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

fn grpc_client(channel: Channel, config: &Config) -> PdGrpc<Channel> {
    PdGrpc::new(channel)
        .max_decoding_message_size(config.max_decoding_message_size)
        .max_encoding_message_size(config.max_encoding_message_size)
}

fn cluster_id(resp: &pdpb::GetMembersResponse) -> u64 {
    resp.header.as_ref().map_or(0, |h| h.cluster_id)
}

fn leader_of(endpoint: &str, leader: Option<pdpb::Member>) -> Result<Member> {
    leader
        .map(Member::from)
        .filter(|m| !m.client_urls.is_empty())
        .ok_or_else(|| Error::Pd(format!("PD {endpoint} knows no leader with a client URL")))
}

/// Connects to `endpoint` and calls `GetMembers` there.
async fn get_members_from(endpoint: &str, config: &Config) -> Result<pdpb::GetMembersResponse> {
    let channel = transport::connect(endpoint, config).await?;
    get_members(&mut grpc_client(channel, config), endpoint, config).await
}

/// One `GetMembers` call, bounded by the configured timeout.
async fn get_members(
    client: &mut PdGrpc<Channel>,
    endpoint: &str,
    config: &Config,
) -> Result<pdpb::GetMembersResponse> {
    let rt = &config.runtime;
    let started = rt.now();
    let call = async {
        let mut request = tonic::Request::new(pdpb::GetMembersRequest::default());
        request.set_timeout(config.timeout);
        client
            .get_members(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| transport::status_to_error(status, endpoint))
    };
    let result = match rt.timeout(config.timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            operation: "PD GetMembers",
            after: config.timeout,
        }),
    };
    let result = result.and_then(check_header);
    observe::pd_request("GetMembers", elapsed(rt.now(), started), result.is_ok());
    result
}

fn elapsed(now: crate::rt::Instant, started: crate::rt::Instant) -> Duration {
    now.saturating_duration_since(started)
}

/// Turns an error in a PD response header into our error.
fn check_header(resp: pdpb::GetMembersResponse) -> Result<pdpb::GetMembersResponse> {
    match resp.header.as_ref().and_then(|h| h.error.as_ref()) {
        Some(e) if e.r#type != pdpb::ErrorType::Ok as i32 => Err(Error::Pd(format!(
            "{:?}: {}",
            pdpb::ErrorType::try_from(e.r#type).unwrap_or(pdpb::ErrorType::Unknown),
            e.message
        ))),
        _ => Ok(resp),
    }
}
