//! Identifiers, parsed once at the edge.
//!
//! A path segment such as `"321"` or `"a1b2"` becomes a [`VideoId`] or [`JobId`] here or is rejected
//! with an [`IdError`]; nothing that failed to parse can reach a store key.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an id was refused. The message is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must be a positive integer")]
    NotPositiveInteger { what: &'static str },
    #[error("job id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    BadJobId,
    #[error("job type must be 1 to 64 characters of a-z, 0-9 or '_'")]
    BadJobType,
}

fn parse_positive(s: &str, what: &'static str) -> Result<i64, IdError> {
    // Digits only: no sign, no whitespace, no leading zeros beyond "0" itself (which is refused),
    // and at most 18 digits so the value always fits an i64 without overflow checks elsewhere.
    let ok = !s.is_empty()
        && s.len() <= 18
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    if !ok {
        return Err(IdError::NotPositiveInteger { what });
    }
    s.parse::<i64>()
        .map_err(|_| IdError::NotPositiveInteger { what })
}

macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(i64);

        impl $name {
            /// Parses a decimal path segment or claim: a positive integer below 10^18.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_positive(s, $what).map(Self)
            }

            /// Accepts an integer that is already typed (a database column, a JSON number).
            pub fn new(v: i64) -> Result<Self, IdError> {
                if v > 0 && v < 1_000_000_000_000_000_000 {
                    Ok(Self(v))
                } else {
                    Err(IdError::NotPositiveInteger { what: $what })
                }
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = IdError;
            fn try_from(v: i64) -> Result<Self, IdError> {
                Self::new(v)
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> i64 {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

int_id!(
    /// A tenant (one academy). Taken only from a verified token, never from a header or path alone.
    TenantId,
    "tenant id"
);
int_id!(
    /// A video, a positive integer assigned by the database.
    VideoId,
    "video id"
);

fn is_job_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// An AI/tool job id: `[A-Za-z0-9_-]{1,64}` (docs/contract.md §3). Safe inside a Redis key: it cannot
/// contain `:`, `{`, `}`, `*` or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if (1..=64).contains(&s.len()) && s.bytes().all(is_job_id_byte) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadJobId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(v: JobId) -> String {
        v.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An AI/tool job type such as `excel_parsing`: `[a-z0-9_]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobType(String);

impl JobType {
    pub const EXCEL_PARSING: &'static str = "excel_parsing";
    pub const ATTENDANCE_EXCEL_EXPORT: &'static str = "attendance_excel_export";

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadJobType)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Job types whose progress and results expose a tenant's personal data: only staff roles may
    /// see them; students and parents get the same 404 as for a missing route (docs/contract.md §3).
    pub fn is_staff_only(&self) -> bool {
        self.0 == Self::EXCEL_PARSING || self.0.ends_with("_export")
    }
}

impl TryFrom<String> for JobType {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<JobType> for String {
    fn from(v: JobType) -> String {
        v.0
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which task inside a tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum TaskId {
    Video(VideoId),
    Job(JobId),
}

impl TaskId {
    pub fn kind(&self) -> crate::TaskKind {
        match self {
            TaskId::Video(_) => crate::TaskKind::Video,
            TaskId::Job(_) => crate::TaskKind::Job,
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskId::Video(v) => write!(f, "video:{v}"),
            TaskId::Job(j) => write!(f, "job:{j}"),
        }
    }
}

/// The full address of one tracked task: tenant plus task. Every store key is derived from this.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskKey {
    pub tenant: TenantId,
    pub task: TaskId,
}

impl TaskKey {
    pub fn video(tenant: TenantId, id: VideoId) -> Self {
        Self {
            tenant,
            task: TaskId::Video(id),
        }
    }

    pub fn job(tenant: TenantId, id: JobId) -> Self {
        Self {
            tenant,
            task: TaskId::Job(id),
        }
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant:{}/{}", self.tenant, self.task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_ids_are_plain_positive_integers() {
        assert_eq!(VideoId::parse("321").map(VideoId::get), Ok(321));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "01",
            " 1",
            "1 ",
            "1e3",
            "x",
            "١٢",
            "9999999999999999999",
        ] {
            assert!(VideoId::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(VideoId::parse("999999999999999999").is_ok());
    }

    #[test]
    fn job_ids_follow_the_contract_alphabet() {
        assert!(JobId::parse("a1b2_C-3").is_ok());
        assert!(JobId::parse(&"a".repeat(64)).is_ok());
        for bad in [
            "",
            "a:b",
            "a{b}",
            "a*",
            "a?",
            "a[b]",
            "a b",
            "ü",
            &"a".repeat(65),
        ] {
            assert!(JobId::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn staff_only_types() {
        let t = |s| JobType::parse(s).expect("valid");
        assert!(t("excel_parsing").is_staff_only());
        assert!(t("attendance_excel_export").is_staff_only());
        assert!(!t("ppt_generation").is_staff_only());
        assert!(JobType::parse("Excel").is_err());
    }

    #[test]
    fn ids_deserialize_through_validation() {
        assert!(serde_json::from_str::<VideoId>("0").is_err());
        assert!(serde_json::from_str::<JobId>("\"a:b\"").is_err());
        assert_eq!(
            serde_json::from_str::<TaskKey>(r#"{"tenant":3,"task":{"kind":"job","id":"ab"}}"#)
                .expect("valid"),
            TaskKey::job(
                TenantId::new(3).expect("valid"),
                JobId::parse("ab").expect("valid")
            )
        );
    }
}
