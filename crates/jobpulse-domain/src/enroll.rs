//! The options of an Excel enroll (docs/contract.md §7, `POST /api/v1/enrollments/lecture_enroll_from_excel/`):
//! how the imported students' initial passwords are set, and which session of the lecture they
//! are enrolled into.
//!
//! The enroll route parses them with [`EnrollOptions::parse`] and writes them into the
//! `excel_parsing` job's payload ([`EnrollOptions::write_to`]); the import handler reads them
//! back with [`EnrollOptions::from_payload`]. A payload without them (a job submitted through
//! `POST /api/v1/jobs/`) means [`PasswordMode::Random`] and the lecture's first session.
//!
//! - `random`: a password generated per student, returned to staff in the result's
//!   `credentials`;
//! - `phone_last4`: the last four digits of the student's phone (a row without a student phone
//!   fails with a per-row error);
//! - `fixed`: the `initial_password` given with the request (at least
//!   [`MIN_FIXED_PASSWORD_CHARS`] characters) for every student.

use serde_json::{Map, Value};

/// Shortest `initial_password` of the `fixed` mode, in characters.
pub const MIN_FIXED_PASSWORD_CHARS: usize = 4;
/// Longest `initial_password`, in characters (bounds the input; Argon2 takes any length).
pub const MAX_FIXED_PASSWORD_CHARS: usize = 128;

/// Payload keys of the options.
pub const PAYLOAD_PASSWORD_MODE: &str = "password_mode";
pub const PAYLOAD_INITIAL_PASSWORD: &str = "initial_password";
pub const PAYLOAD_SESSION_ID: &str = "session_id";
/// Where the API puts the `fixed` password instead of [`PAYLOAD_INITIAL_PASSWORD`]: sealed
/// (`jobpulse_db::sealed`) to [`payload_context`], so it is not stored in clear.
pub const PAYLOAD_FIXED_SEALED: &str = "initial_password_sealed";

/// What a `fixed` password in a payload is sealed to: the job's tenant (the job id does not
/// exist yet when the API seals it).
pub fn payload_context(tenant: crate::TenantId) -> String {
    format!("tenant {tenant} enroll payload")
}

/// How initial passwords are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PasswordMode {
    #[default]
    Random,
    PhoneLast4,
    Fixed,
}

impl PasswordMode {
    pub const ALL: [PasswordMode; 3] = [Self::PhoneLast4, Self::Fixed, Self::Random];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::PhoneLast4 => "phone_last4",
            Self::Fixed => "fixed",
        }
    }

    pub fn parse(s: &str) -> Result<Self, EnrollError> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| EnrollError::UnknownMode(s.chars().take(40).collect()))
    }
}

impl std::fmt::Display for PasswordMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error("unknown password_mode {0:?}: use phone_last4, fixed or random")]
    UnknownMode(String),
    #[error(
        "password_mode=fixed needs an initial_password of {MIN_FIXED_PASSWORD_CHARS} to {MAX_FIXED_PASSWORD_CHARS} characters"
    )]
    FixedPasswordLength,
    #[error("initial_password must not contain control characters")]
    FixedPasswordInvalid,
    #[error("initial_password is only taken with password_mode=fixed (send \"\" otherwise)")]
    PasswordWithoutFixed,
    #[error("session_id must be a positive integer")]
    BadSession,
    #[error("the job payload's enroll options are malformed: {0}")]
    BadPayload(&'static str),
}

/// The options of one enroll. Its `Debug` does not show the fixed password.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EnrollOptions {
    pub mode: PasswordMode,
    fixed_password: Option<String>,
    pub session_id: Option<i64>,
}

impl std::fmt::Debug for EnrollOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollOptions")
            .field("mode", &self.mode)
            .field(
                "fixed_password",
                &self.fixed_password.as_ref().map(|_| "<redacted>"),
            )
            .field("session_id", &self.session_id)
            .finish()
    }
}

impl EnrollOptions {
    /// Checks the route's fields: `initial_password` is `""` unless the mode is `fixed`, then
    /// [`MIN_FIXED_PASSWORD_CHARS`]..=[`MAX_FIXED_PASSWORD_CHARS`] characters without control
    /// characters (taken as sent: spaces count).
    pub fn parse(
        mode: PasswordMode,
        initial_password: &str,
        session_id: Option<i64>,
    ) -> Result<Self, EnrollError> {
        if session_id.is_some_and(|s| s <= 0) {
            return Err(EnrollError::BadSession);
        }
        let fixed_password = match mode {
            PasswordMode::Fixed => {
                let n = initial_password.chars().count();
                if !(MIN_FIXED_PASSWORD_CHARS..=MAX_FIXED_PASSWORD_CHARS).contains(&n) {
                    return Err(EnrollError::FixedPasswordLength);
                }
                if initial_password.chars().any(char::is_control) {
                    return Err(EnrollError::FixedPasswordInvalid);
                }
                Some(initial_password.to_owned())
            }
            _ if !initial_password.is_empty() => return Err(EnrollError::PasswordWithoutFixed),
            _ => None,
        };
        Ok(Self {
            mode,
            fixed_password,
            session_id,
        })
    }

    /// The password every student gets in the `fixed` mode.
    pub fn fixed_password(&self) -> Option<&str> {
        self.fixed_password.as_deref()
    }

    /// Writes the options into a job payload.
    pub fn write_to(&self, payload: &mut Map<String, Value>) {
        payload.insert(PAYLOAD_PASSWORD_MODE.into(), self.mode.as_str().into());
        if let Some(p) = &self.fixed_password {
            payload.insert(PAYLOAD_INITIAL_PASSWORD.into(), p.as_str().into());
        }
        if let Some(s) = self.session_id {
            payload.insert(PAYLOAD_SESSION_ID.into(), s.into());
        }
    }

    /// Reads the options back from a job payload (absent keys: the defaults), with the checks
    /// of [`EnrollOptions::parse`].
    pub fn from_payload(payload: &Value) -> Result<Self, EnrollError> {
        let mode = match payload.get(PAYLOAD_PASSWORD_MODE) {
            None | Some(Value::Null) => PasswordMode::Random,
            Some(Value::String(s)) => PasswordMode::parse(s)?,
            Some(_) => return Err(EnrollError::BadPayload("password_mode is not a string")),
        };
        let password = match payload.get(PAYLOAD_INITIAL_PASSWORD) {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(EnrollError::BadPayload("initial_password is not a string")),
        };
        let session = match payload.get(PAYLOAD_SESSION_ID) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or(EnrollError::BadSession)?),
        };
        Self::parse(mode, password, session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_unknown_is_refused() {
        for m in PasswordMode::ALL {
            assert_eq!(PasswordMode::parse(m.as_str()), Ok(m));
        }
        assert!(matches!(
            PasswordMode::parse("birthday"),
            Err(EnrollError::UnknownMode(_))
        ));
        assert!(PasswordMode::parse("Random").is_err(), "exact names only");
    }

    #[test]
    fn fixed_needs_four_to_128_characters() {
        let fixed = |p: &str| EnrollOptions::parse(PasswordMode::Fixed, p, None);
        assert_eq!(fixed("abc"), Err(EnrollError::FixedPasswordLength));
        assert_eq!(fixed(""), Err(EnrollError::FixedPasswordLength));
        assert_eq!(
            fixed("한글두자").expect("4 characters").fixed_password(),
            Some("한글두자")
        );
        assert!(fixed(&"x".repeat(128)).is_ok());
        assert_eq!(
            fixed(&"x".repeat(129)),
            Err(EnrollError::FixedPasswordLength)
        );
        assert_eq!(fixed("ab\ncd"), Err(EnrollError::FixedPasswordInvalid));
    }

    #[test]
    fn a_password_with_another_mode_is_refused() {
        for m in [PasswordMode::Random, PasswordMode::PhoneLast4] {
            assert_eq!(
                EnrollOptions::parse(m, "1234", None),
                Err(EnrollError::PasswordWithoutFixed)
            );
            let ok = EnrollOptions::parse(m, "", Some(3)).expect("valid");
            assert_eq!(ok.fixed_password(), None);
        }
        assert_eq!(
            EnrollOptions::parse(PasswordMode::Random, "", Some(0)),
            Err(EnrollError::BadSession)
        );
    }

    #[test]
    fn payload_round_trip_and_defaults() {
        let o = EnrollOptions::parse(PasswordMode::Fixed, "pass1234", Some(9)).expect("valid");
        let mut m = Map::new();
        m.insert("lecture_id".into(), 4.into());
        o.write_to(&mut m);
        let v = Value::Object(m);
        assert_eq!(
            v,
            serde_json::json!({"lecture_id": 4, "password_mode": "fixed",
                               "initial_password": "pass1234", "session_id": 9})
        );
        assert_eq!(EnrollOptions::from_payload(&v), Ok(o.clone()));
        assert!(!format!("{o:?}").contains("pass1234"));
        assert_eq!(
            EnrollOptions::from_payload(&serde_json::json!({})),
            Ok(EnrollOptions::default())
        );
        assert!(
            EnrollOptions::from_payload(&serde_json::json!({"password_mode": "fixed"})).is_err()
        );
        assert!(EnrollOptions::from_payload(&serde_json::json!({"password_mode": 3})).is_err());
        assert!(EnrollOptions::from_payload(&serde_json::json!({"session_id": "x"})).is_err());
    }
}
