//! The HTTP edge's extractors: who is calling ([`Browser`], [`Staff`], [`Worker`]) and the path
//! and query parameters ([`Id`], [`PathParams`], [`QueryParams`]), each rejecting with our
//! [`ApiError`] so every refusal keeps the one error envelope.
//!
//! The principals need the token verifier from the router's state (`Arc<Verifier>:
//! FromRef<S>`); the read routes' [`ReadState`](crate::state::ReadState) provides it without
//! a database handle.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::auth::{Audience, Principal, Verifier};
use crate::error::ApiError;

/// The caller of a browser route, proven by its bearer token (and `X-Tenant-Code`).
#[derive(Debug, Clone)]
pub struct Browser(pub Principal);

/// The caller of a browser route with a staff role; others get 403 "this needs a staff role".
#[derive(Debug, Clone)]
pub struct Staff(pub Principal);

/// The caller of a worker route (a token with the `worker` audience).
#[derive(Debug, Clone)]
pub struct Worker(pub Principal);

/// Implements `FromRequestParts` for a principal: the token is verified for `$audience`, then
/// `$check` may refuse the principal.
macro_rules! principal {
    ($name:ident, $audience:expr, $check:expr) => {
        impl<S> FromRequestParts<S> for $name
        where
            Arc<Verifier>: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let p = Arc::<Verifier>::from_ref(state).authenticate(&parts.headers, $audience)?;
                let check: fn(&Principal) -> Result<(), ApiError> = $check;
                check(&p)?;
                Ok($name(p))
            }
        }
    };
}

principal!(Browser, Audience::Browser, |_| Ok(()));
principal!(Staff, Audience::Browser, |p| if p.is_staff() {
    Ok(())
} else {
    Err(ApiError::Forbidden("this needs a staff role"))
});
principal!(Worker, Audience::Worker, |_| Ok(()));

/// Path parameters; a path that does not deserialize is 400 "malformed path".
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathParams(t))
            .map_err(|_| ApiError::BadRequest("malformed path".into()))
    }
}

/// An id parsed from the route's one path parameter (`VideoId`, `JobId`, or the text itself):
/// 400 "malformed path" when there is none, 400 with the id's own message when it is invalid.
#[derive(Debug)]
pub struct Id<T>(pub T);

/// An id that parses from its path text.
pub trait PathId: Sized {
    fn parse_path(s: &str) -> Result<Self, ApiError>;
}

impl PathId for jobpulse_domain::VideoId {
    fn parse_path(s: &str) -> Result<Self, ApiError> {
        Ok(jobpulse_domain::VideoId::parse(s)?)
    }
}

impl PathId for jobpulse_domain::JobId {
    fn parse_path(s: &str) -> Result<Self, ApiError> {
        Ok(jobpulse_domain::JobId::parse(s)?)
    }
}

impl PathId for String {
    fn parse_path(s: &str) -> Result<Self, ApiError> {
        Ok(s.to_owned())
    }
}

impl<S, T> FromRequestParts<S> for Id<T>
where
    T: PathId,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PathParams(raw) = PathParams::<String>::from_request_parts(parts, state).await?;
        T::parse_path(&raw).map(Id)
    }
}

/// Query parameters; a query that does not deserialize is 400 with the framework's reason.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryParams(t))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}
