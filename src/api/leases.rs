//! The wire types of leases (`shared/API.md`, "Leases"): a peer says "I am
//! working on these paths of this code base", so sessions that share a
//! repository see who edits what before they collide.

use super::{ErrorBody, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A lease's ttl when the request gives none: 30 minutes.
pub const DEFAULT_LEASE_TTL_MS: u64 = 30 * 60 * 1000;
/// The shortest lease: 1 second.
pub const MIN_LEASE_TTL_MS: u64 = 1000;
/// The longest lease: 24 hours (renew it to keep it longer).
pub const MAX_LEASE_TTL_MS: u64 = 24 * 3600 * 1000;
/// The most path patterns one lease (or one check) names.
pub const MAX_LEASE_PATHS: usize = 100;
/// The longest path pattern, in characters.
pub const MAX_LEASE_PATH_LEN: usize = 1024;
/// The longest reason, in characters.
pub const MAX_LEASE_REASON_LEN: usize = 500;
/// The longest repo name, in characters.
pub const MAX_REPO_LEN: usize = 512;

/// Where a lease is in its life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum LeaseStatus {
    /// In force: conflicting requests are refused.
    Held,
    /// Given up by its holder or a person, or ended because its holder left.
    Released,
    /// Its ttl ran out.
    Expired,
}

impl LeaseStatus {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A peer's claim on path patterns of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// Unique id (UUID v7).
    pub id: Uuid,
    /// The peer that holds it.
    pub holder: Uuid,
    /// The holder's role when it took the lease.
    pub holder_role: String,
    /// The holder's name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_name: Option<String>,
    /// The code base: the normalised `origin` remote URL, else the
    /// top-level directory's name.
    pub repo: String,
    /// Repo-relative, `/`-separated patterns: a file, a directory ending in
    /// `/`, or a glob.
    pub paths: Vec<String>,
    /// Exclusive (the default) conflicts with every other lease on an
    /// overlapping path; shared ones only with exclusive ones.
    pub exclusive: bool,
    /// Why the holder needs the paths, for whoever is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was granted.
    pub created_at: Timestamp,
    /// When it ends unless renewed.
    pub expires_at: Timestamp,
    /// Where it is in its life.
    pub status: LeaseStatus,
    /// When it was released or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<Timestamp>,
}

/// Body of `POST /leases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRequest {
    /// Repo-relative patterns (1-100): a file, a directory ending in `/`,
    /// or a glob. Absolute paths and `..` are refused.
    #[schema(min_items = 1, max_items = 100)]
    pub paths: Vec<String>,
    /// The code base (default: derived by the client; the broker needs one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 512)]
    pub repo: Option<String>,
    /// Milliseconds until it expires: default 30 min, at least 1 s, at most 24 h.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::whole_number"
    )]
    #[schema(minimum = 1000, maximum = 86_400_000)]
    pub ttl: Option<u64>,
    /// Why, shown to whoever is refused (at most 500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
    /// `false` for a shared lease (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<bool>,
}

/// Body of `POST /leases/{id}/renew`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RenewLeaseRequest {
    /// Milliseconds from now until it expires (default: the lease's own ttl
    /// again, as given when it was taken).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::whole_number"
    )]
    #[schema(minimum = 1000, maximum = 86_400_000)]
    pub ttl: Option<u64>,
}

/// `{"lease": Lease}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseResponse {
    /// The lease as it stands.
    pub lease: Lease,
}

/// `{"leases": [Lease]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeasesResponse {
    /// The held leases, oldest first.
    pub leases: Vec<Lease>,
}

/// One checked path and a lease of another peer that covers it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseConflict {
    /// The path as asked.
    pub path: String,
    /// The lease that covers it.
    pub lease: Lease,
}

/// `GET /leases/check`: `{"conflicts": [{"path", "lease"}]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseCheckResponse {
    /// Empty when every path is free for the caller.
    pub conflicts: Vec<LeaseConflict>,
}

/// The 409 answer to a lease request that conflicts: the usual error, and
/// the leases in the way beside it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseRefusal {
    /// `conflict`, reason `lease_conflict`.
    pub error: ErrorBody,
    /// Every held lease that conflicts with the request.
    pub conflicts: Vec<Lease>,
}

/// Body of `POST /leases/refusals`: a session's hook refused an edit
/// because of leases; the broker announces it (an `edit_refused` event) so
/// the person sees it in the dashboard's activity feed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefusedEdit {
    /// The repo of the paths.
    pub repo: String,
    /// The repo-relative paths the refused edit would have changed (1-100).
    pub paths: Vec<String>,
    /// The tool that was refused (`Edit`, `Write`, ...; at most 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub tool: Option<String>,
    /// The leases in the way (at most 100).
    #[serde(default)]
    pub leases: Vec<Uuid>,
}
