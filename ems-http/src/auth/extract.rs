//! Extractors that turn `Authorization: Bearer …` into a core [`Actor`].

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ems_core::Actor;

use super::Claims;
use crate::error::ApiError;
use crate::state::AppState;

/// A request with a valid access token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The verified claims.
    pub claims: Claims,
    /// The core actor they act as.
    pub actor: Actor,
}

/// A request with a valid access token, or none at all (anonymous). A token that
/// is present but invalid is still refused.
#[derive(Debug, Clone)]
pub struct MaybeAuthenticated(pub Option<Authenticated>);

impl MaybeAuthenticated {
    /// The actor: the token's, or an anonymous customer (who can only read
    /// public data).
    pub fn actor(&self) -> Actor {
        self.0.as_ref().map_or_else(crate::anonymous, |a| a.actor)
    }
}

fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("Authorization header is not ASCII"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthenticated("Authorization must be `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthenticated(
            "Authorization must be `Bearer <token>`",
        ));
    }
    Ok(Some(token.trim()))
}

fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Option<Authenticated>, ApiError> {
    if let Some(a) = parts.extensions.get::<Authenticated>() {
        return Ok(Some(a.clone()));
    }
    let Some(token) = bearer(parts)? else {
        return Ok(None);
    };
    let claims = state.auth.verify_access(token)?;
    let a = Authenticated {
        actor: claims.actor(),
        claims,
    };
    parts.extensions.insert(a.clone());
    Ok(Some(a))
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state)?
            .ok_or_else(|| ApiError::unauthenticated("this endpoint needs a bearer token"))
    }
}

impl FromRequestParts<AppState> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self(authenticate(parts, state)?))
    }
}
