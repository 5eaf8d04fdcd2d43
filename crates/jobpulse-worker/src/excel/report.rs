//! The `excel_parsing` result the front end reads on DONE (docs/contract.md §3): `created`,
//! `duplicates[]`, `restored[]`, `failed[{row, name, error}]`, `credentials[{name, login_id,
//! password}]`.
//!
//! Credentials are staff-only: the full report is kept with the job in the database and served by
//! the result endpoint; what goes into the read model is [`ImportReport::without_credentials`].

use serde::{Deserialize, Serialize};

use super::import::RowError;

/// A row the enrolment step did not create a student for, or restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRef {
    /// The sheet's 1-based row number.
    pub row: u32,
    pub name: String,
}

/// A refused row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRow {
    pub row: u32,
    pub name: String,
    pub error: String,
}

impl From<&RowError> for FailedRow {
    fn from(e: &RowError) -> Self {
        Self {
            row: e.row,
            name: e.name.clone(),
            error: e.error.clone(),
        }
    }
}

/// The initial login of a newly created student, shown once to staff.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub name: String,
    pub login_id: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("login_id", &self.login_id)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The whole result of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Students created.
    pub created: u32,
    /// Rows whose student already exists (in the sheet above, or in the lecture's tenant).
    pub duplicates: Vec<RowRef>,
    /// Rows that matched a soft-deleted student, who was restored.
    pub restored: Vec<RowRef>,
    pub failed: Vec<FailedRow>,
    /// One per created student; staff-only.
    pub credentials: Vec<Credential>,
}

impl ImportReport {
    /// The report as the read model may hold it: the same, with `credentials` empty.
    pub fn without_credentials(&self) -> Self {
        Self {
            credentials: Vec::new(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_the_contract_and_hides_passwords_from_debug() {
        let r = ImportReport {
            created: 1,
            duplicates: vec![RowRef {
                row: 4,
                name: "김철수".into(),
            }],
            restored: vec![],
            failed: vec![FailedRow {
                row: 5,
                name: String::new(),
                error: "이름이 비어 있습니다".into(),
            }],
            credentials: vec![Credential {
                name: "이영희".into(),
                login_id: "s12345678".into(),
                password: "Secret-pw-123".into(),
            }],
        };
        let v = serde_json::to_value(&r).expect("serialises");
        assert_eq!(
            v,
            serde_json::json!({
                "created": 1,
                "duplicates": [{"row": 4, "name": "김철수"}],
                "restored": [],
                "failed": [{"row": 5, "name": "", "error": "이름이 비어 있습니다"}],
                "credentials": [{"name": "이영희", "login_id": "s12345678", "password": "Secret-pw-123"}],
            })
        );
        assert!(!format!("{r:?}").contains("Secret-pw-123"));
        let public = serde_json::to_value(r.without_credentials()).expect("serialises");
        assert_eq!(public["credentials"], serde_json::json!([]));
        assert_eq!(public["created"], 1);
    }
}
