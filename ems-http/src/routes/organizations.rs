//! Organizations and user accounts (administration).

use axum::extract::State;
use axum::response::Response;
use ems_core::directory::{NewUser, Organization, Role, UserProfile};
use ems_core::id::{OrganizationId, UserId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{created, Json, Path};
use crate::auth::{Authenticated, MaybeAuthenticated};
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// A new organization.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganization {
    /// Display name.
    pub name: String,
}

/// Creates an organization (admins).
#[utoipa::path(post, path = "/organizations", tag = "admin", request_body = NewOrganization, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Organization),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
pub async fn create_organization(
    State(s): State<AppState>,
    auth: Authenticated,
    Json(body): Json<NewOrganization>,
) -> ApiResult<Response> {
    Ok(created(
        s.ems.create_organization(&auth.actor, &body.name).await?,
    ))
}

/// Reads an organization (public: its name appears on events).
#[utoipa::path(get, path = "/organizations/{id}", tag = "admin", params(("id" = uuid::Uuid, Path, description = "Organization id")),
    responses((status = 200, description = "The organization", body = Organization), (status = 404, description = "Unknown", body = ErrorBody)))]
pub async fn get_organization(
    State(s): State<AppState>,
    _auth: MaybeAuthenticated,
    Path(id): Path<OrganizationId>,
) -> ApiResult<Json<Organization>> {
    Ok(Json(s.ems.organization(id).await?))
}

/// A new account of any role, with its password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Email address (unique, case-insensitive).
    pub email: String,
    /// At least 10 characters.
    pub password: String,
    /// Name shown on tickets.
    pub display_name: String,
    /// Platform role.
    pub role: Role,
    /// Required for organizers.
    #[serde(default)]
    pub organization: Option<OrganizationId>,
}

/// Creates an account of any role (admins): organizers of an organization,
/// other admins, customers.
#[utoipa::path(post, path = "/users", tag = "admin", request_body = NewAccount, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = UserProfile),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "Email taken", body = ErrorBody),
    ))]
pub async fn create_user(
    State(s): State<AppState>,
    auth: Authenticated,
    Json(body): Json<NewAccount>,
) -> ApiResult<Response> {
    if !auth.actor.is_privileged() {
        return Err(crate::error::ApiError::forbidden(
            "only admins create accounts here; customers use /auth/register",
        ));
    }
    let phc = crate::auth::hash_password(&body.password)?;
    let user = s
        .ems
        .register_user(
            &auth.actor,
            NewUser {
                email: body.email,
                display_name: body.display_name,
                role: body.role,
                organization: body.organization,
            },
        )
        .await?;
    s.auth.store().set_password(user.id, phc).await?;
    Ok(created(user))
}

/// Reads an account (the user itself, admins).
#[utoipa::path(get, path = "/users/{id}", tag = "admin", params(("id" = uuid::Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, description = "The profile", body = UserProfile), (status = 403, description = "Someone else's", body = ErrorBody)))]
pub async fn get_user(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<UserId>,
) -> ApiResult<Json<UserProfile>> {
    Ok(Json(s.ems.user(&auth.actor, id).await?))
}
