//! The response every HTTP endpoint of the mock answers with: JSON.

use http::{Response, StatusCode};
use tonic::body::Body;

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(
            http::header::CONTENT_TYPE,
            "application/json; charset=UTF-8",
        )
        .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(
            body,
        ))))
        .unwrap_or_default()
}
