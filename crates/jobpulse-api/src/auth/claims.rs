//! What a token says ([`Claims`]) and what a verified token proves ([`Principal`]: tenant,
//! user, [`Role`], [`Audience`]).

use jobpulse_domain::TenantId;
use serde::{Deserialize, Serialize};

/// A role claim (docs/contract.md §1). Unknown roles are kept and treated as non-staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Teacher,
    Staff,
    Student,
    Parent,
    #[serde(untagged)]
    Other(String),
}

impl Role {
    pub fn is_staff(&self) -> bool {
        matches!(
            self,
            Role::Owner | Role::Admin | Role::Teacher | Role::Staff
        )
    }

    pub fn parse(s: &str) -> Role {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .unwrap_or_else(|_| Role::Other(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Teacher => "teacher",
            Role::Staff => "staff",
            Role::Student => "student",
            Role::Parent => "parent",
            Role::Other(s) => s,
        }
    }
}

/// Who is calling, as proven by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub tenant_code: Option<String>,
    pub user_id: Option<String>,
    pub role: Option<Role>,
    /// Unix seconds.
    pub expires_at: u64,
    pub audience: Audience,
}

impl Principal {
    /// Staff may see staff-only job types; a token without a role is not staff.
    pub fn is_staff(&self) -> bool {
        self.role.as_ref().is_some_and(Role::is_staff)
    }
}

/// Which kind of token it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Browser,
    Worker,
}

/// The claims jobpulse reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    pub token_type: String,
    pub tenant_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<OneOrMany>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// `aud` may be a string or a list of strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn contains(&self, s: &str) -> bool {
        match self {
            OneOrMany::One(a) => a == s,
            OneOrMany::Many(v) => v.iter().any(|a| a == s),
        }
    }
}
