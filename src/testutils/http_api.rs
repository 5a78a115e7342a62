//! The HTTP/1.1 APIs a PD member serves next to gRPC on its port: PD's own (`pd_http`) and
//! the mock's admin API (`admin`), answered as JSON ahead of the gRPC and gRPC-web services.

use futures::future::BoxFuture;
use http::{Request, Response};
use tonic::body::Body;

use super::admin::{self, Admin};
use super::json::json_response;
use super::pd_http::PdHttp;
use super::server::HttpAnswer;

/// The HTTP APIs a PD member serves next to gRPC: PD's own and the mock's admin API.
#[derive(Clone)]
pub(crate) struct HttpApis {
    pub pd: PdHttp,
    pub admin: Admin,
}

impl HttpAnswer for HttpApis {
    fn serves(&self, path: &str) -> bool {
        PdHttp::serves(path) || path.starts_with(admin::PREFIX)
    }

    fn answer(&self, request: Request<Body>) -> BoxFuture<'static, Response<Body>> {
        if let Some((status, body)) = self.pd.answer(request.method(), request.uri().path()) {
            return Box::pin(std::future::ready(json_response(status, body)));
        }
        let admin = self.admin.clone();
        Box::pin(async move {
            let (status, body) = admin.serve(request).await;
            json_response(status, body.to_string())
        })
    }
}
