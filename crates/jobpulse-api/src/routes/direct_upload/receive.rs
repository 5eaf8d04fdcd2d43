//! File storage's upload URL: the API takes the PUT itself (see the module doc of
//! [`super`]).

use super::*;

/// `?partNumber=N&uploadId=U` of a part PUT.
#[derive(Debug, Deserialize)]
pub struct PartQuery {
    #[serde(rename = "partNumber")]
    pub part_number: Option<u32>,
    #[serde(rename = "uploadId")]
    pub upload_id: Option<String>,
}

fn denied(message: &str) -> Response {
    error_response(StatusCode::FORBIDDEN, "access_denied", message.to_owned())
}

#[utoipa::path(put, path = "/media/upload/{tenant}/{id}/{expires}/{sig}", tag = "upload",
    params(("tenant" = i64, Path), ("id" = i64, Path), ("expires" = u64, Path), ("sig" = String, Path),
           ("partNumber" = Option<u32>, Query), ("uploadId" = Option<String>, Query)),
    request_body(content_type = "application/octet-stream", description = "The file (or one part of it)"),
    responses((status = 200, description = "Stored; the `ETag` header is the object's (or the part's) entity tag"),
              (status = 403, description = "Expired or altered URL, or another Content-Type than the one signed", body = crate::error::ErrorBody),
              (status = 409, description = "The video left PENDING", body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody)))]
pub async fn receive(
    State(state): State<AppState>,
    path: Result<Path<(i64, i64, u64, String)>, PathRejection>,
    query: Result<Query<PartQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Ok(Path((tenant, id, expires, sig))) = path else {
        return Ok(denied("malformed upload URL"));
    };
    let Ok(Query(q)) = query else {
        return Ok(denied("malformed upload URL"));
    };
    let (Ok(tenant), Ok(id)) = (TenantId::new(tenant), VideoId::new(id)) else {
        return Ok(denied("malformed upload URL"));
    };
    if expires < now_secs() {
        return Ok(denied("Request has expired"));
    }
    let (t, v, e) = (tenant.to_string(), id.to_string(), expires.to_string());
    let part = match (q.part_number, q.upload_id.as_deref()) {
        (None, None) => None,
        (Some(n), Some(u)) => Some((n, u)),
        _ => return Ok(denied("partNumber and uploadId go together")),
    };
    let signed = match part {
        None => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            state.signer.check_tag(&sig, "put", &[&t, &v, &e, ct])
        }
        Some((n, u)) => state
            .signer
            .check_tag(&sig, "part", &[&t, &v, &e, u, &n.to_string()]),
    };
    if !signed {
        return Ok(denied(
            "the signature does not match (altered URL, or another Content-Type than the init's)",
        ));
    }
    let video = video_of(&state, tenant, id).await?;
    if video.status != VideoStatus::Pending {
        return Err(ApiError::Conflict(format!(
            "the upload of video {id} is over (the video is {})",
            video.status.as_str()
        )));
    }
    let limit = state.limits.video_bytes;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(format!(
            "the file is larger than {limit} bytes"
        )));
    }
    let key = key_of(&video)?;
    let stream = body.into_data_stream();
    let e_tag = match part {
        None => {
            state
                .storage
                .write(&key, stream, limit)
                .await
                .map_err(storage_error)?
                .e_tag
        }
        Some((n, u)) => Some(
            state
                .storage
                .put_part(&key, u, n, stream, limit)
                .await
                .map_err(storage_error)?
                .e_tag,
        ),
    };
    let mut res = StatusCode::OK.into_response();
    if let Some(tag) = e_tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        res.headers_mut().insert(header::ETAG, tag);
    }
    Ok(res)
}
