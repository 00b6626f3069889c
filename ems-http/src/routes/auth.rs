//! Registration, login, token refresh and logout, password reset, the caller's profile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ems_core::directory::{DirectoryStore, NewUser, Role, UserProfile};
use ems_core::Actor;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{created, Json};
use crate::auth::{Authenticated, TokenPair};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// A new customer account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Email address (unique, case-insensitive).
    pub email: String,
    /// At least 10 characters.
    pub password: String,
    /// Name shown on tickets.
    pub display_name: String,
}

/// A new account with its first tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// The profile.
    pub user: UserProfile,
    /// Tokens for it.
    pub tokens: TokenPair,
}

/// Email and password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A refresh token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshToken {
    /// The refresh token of a [`TokenPair`].
    pub refresh_token: String,
}

/// Asks for a password-reset token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The account's email.
    pub email: String,
}

/// Sets a new password with a reset token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token the notifier delivered.
    pub token: String,
    /// The new password (at least 10 characters).
    pub password: String,
}

/// Registers a customer account and logs it in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = Register,
    responses(
        (status = 201, description = "Registered", body = Session),
        (status = 409, description = "Email taken", body = ErrorBody),
        (status = 422, description = "Invalid email, name or password", body = ErrorBody),
    ))]
pub async fn register(
    State(s): State<AppState>,
    Json(body): Json<Register>,
) -> ApiResult<Response> {
    // Check the password before anything is stored.
    let phc = crate::auth::hash_password(&body.password)?;
    let user = s
        .ems
        .register_user(
            &Actor::System,
            NewUser {
                email: body.email,
                display_name: body.display_name,
                role: Role::Customer,
                organization: None,
            },
        )
        .await?;
    s.auth.store().set_password(user.id, phc).await?;
    let tokens = s.auth.login(&user).await?;
    Ok(created(Session { user, tokens }))
}

/// Logs in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Login,
    responses(
        (status = 200, description = "Logged in", body = TokenPair),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
    ))]
pub async fn login(
    State(s): State<AppState>,
    Json(body): Json<Login>,
) -> ApiResult<Json<TokenPair>> {
    let user = s
        .store
        .user_by_email(body.email.trim())
        .await
        .map_err(ApiError::from)?;
    if !s.auth.verify(user.as_ref(), &body.password).await? {
        return Err(ApiError::unauthenticated("wrong email or password"));
    }
    let user = user.ok_or_else(|| ApiError::unauthenticated("wrong email or password"))?;
    Ok(Json(s.auth.login(&user).await?))
}

/// Exchanges a refresh token for a new pair; the old one is spent. Presenting a
/// spent token revokes every token of that login.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshToken,
    responses(
        (status = 200, description = "A new pair", body = TokenPair),
        (status = 401, description = "Unknown, expired, revoked or reused token", body = ErrorBody),
    ))]
pub async fn refresh(
    State(s): State<AppState>,
    Json(body): Json<RefreshToken>,
) -> ApiResult<Json<TokenPair>> {
    let (user, family) = s.auth.refresh(&body.refresh_token).await?;
    let profile = s
        .store
        .user(user)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("the token's user no longer exists"))?;
    Ok(Json(s.auth.rotate(&profile, family).await?))
}

/// Ends the login the refresh token belongs to (every token rotated from it).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshToken,
    responses((status = 204, description = "Logged out")))]
pub async fn logout(
    State(s): State<AppState>,
    Json(body): Json<RefreshToken>,
) -> ApiResult<StatusCode> {
    s.auth.logout(&body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a password-reset token to the account's owner through the notifier.
/// Answers 202 whether or not the email is known.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth", request_body = ResetRequest,
    responses((status = 202, description = "If the account exists, a token is on its way")))]
pub async fn request_reset(
    State(s): State<AppState>,
    Json(body): Json<ResetRequest>,
) -> ApiResult<StatusCode> {
    if let Some(user) = s.store.user_by_email(body.email.trim()).await? {
        s.auth.request_reset(&user).await?;
    }
    Ok(StatusCode::ACCEPTED)
}

/// Sets a new password with a reset token; every existing login of the account ends.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm,
    responses(
        (status = 204, description = "Password changed"),
        (status = 422, description = "Unknown, used or expired token, or weak password", body = ErrorBody),
    ))]
pub async fn confirm_reset(
    State(s): State<AppState>,
    Json(body): Json<ResetConfirm>,
) -> ApiResult<StatusCode> {
    s.auth.reset(&body.token, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's profile.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = UserProfile),
        (status = 401, description = "No or bad token", body = ErrorBody),
    ))]
pub async fn me(State(s): State<AppState>, auth: Authenticated) -> ApiResult<Response> {
    let profile = s.ems.user(&auth.actor, auth.claims.sub).await?;
    Ok(Json(profile).into_response())
}
