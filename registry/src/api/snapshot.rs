//! Backup and restore of the whole replicated state: `GET /v1/snapshot` answers a gzip of
//! the state blob; `PUT /v1/snapshot` validates one and replaces the state through Raft.

use std::io::{Read, Write};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::error::ApiError;
use super::extract::BodyBytes;
use super::read;
use super::ApiState;
use crate::store::state::decode_blob;
use crate::types::Command;

/// Largest backup accepted, compressed and uncompressed.
const MAX_SNAPSHOT: usize = 128 * 1024 * 1024;

pub async fn save(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let node = &api.node;
    let index = node.state.applied_index();
    let blob = node.state.export()?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    let gz = gz
        .write_all(&blob)
        .and_then(|()| gz.finish())
        .map_err(|e| ApiError::unavailable(format!("compressing snapshot: {e}")))?;
    let mut resp = Response::new(Body::from(gz));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    read::meta_headers(node, index, resp.headers_mut());
    Ok(resp)
}

pub async fn restore(
    State(api): State<Arc<ApiState>>,
    body: BodyBytes<MAX_SNAPSHOT>,
) -> Result<Response, ApiError> {
    let mut blob = Vec::new();
    GzDecoder::new(&body.0[..])
        .take(MAX_SNAPSHOT as u64 + 1)
        .read_to_end(&mut blob)
        .map_err(|e| ApiError::bad_request(format!("snapshot is not a gzip stream: {e}")))?;
    if blob.len() > MAX_SNAPSHOT {
        return Err(ApiError::too_large(
            "snapshot expands past the 128 MiB limit",
        ));
    }
    decode_blob(&blob).map_err(|e| ApiError::bad_request(format!("snapshot rejected: {e}")))?;
    let res = api.node.write(Command::Restore { blob }).await?;
    if !res.ok {
        return Err(ApiError::bad_request(
            "snapshot rejected by the state machine",
        ));
    }
    let mut resp = axum::http::StatusCode::OK.into_response();
    read::meta_headers(&api.node, res.index, resp.headers_mut());
    Ok(resp)
}
