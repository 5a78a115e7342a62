//! The mock PD service.

use std::net::SocketAddr;

use tonic::{Request, Response, Status};

use super::router::Router;
use crate::proto::pdpb::{self, pd_server::Pd, pd_server::PdServer};

/// PD's name in `GetMembers`.
const MEMBER_NAME: &str = "pd-1";

#[derive(Debug, Clone)]
pub(crate) struct MockPd {
    cluster_id: u64,
    member: pdpb::Member,
}

impl MockPd {
    pub(crate) fn new(cluster_id: u64, addr: SocketAddr) -> Self {
        let url = format!("http://{addr}");
        MockPd {
            cluster_id,
            member: pdpb::Member {
                name: MEMBER_NAME.into(),
                member_id: cluster_id.rotate_left(17) | 1,
                client_urls: vec![url.clone()],
                peer_urls: vec![url],
                ..Default::default()
            },
        }
    }

    pub(crate) fn into_router(self) -> Router {
        Router::default().add(
            PdServer::new(self)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20),
        )
    }

    fn header(&self) -> pdpb::ResponseHeader {
        pdpb::ResponseHeader {
            cluster_id: self.cluster_id,
            error: None,
        }
    }
}

#[tonic::async_trait]
impl Pd for MockPd {
    /// Answered without checking the cluster id: this is how clients learn it.
    async fn get_members(
        &self,
        _request: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        Ok(Response::new(pdpb::GetMembersResponse {
            header: Some(self.header()),
            members: vec![self.member.clone()],
            leader: Some(self.member.clone()),
            etcd_leader: Some(self.member.clone()),
            ..Default::default()
        }))
    }
}
