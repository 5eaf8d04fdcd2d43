//! One sheet row to one student, or to the reasons it cannot be one.

use serde::Serialize;

use super::grid::{Cell, GridRow};
use super::header::{Field, HeaderMap};
use crate::excel::phone::Phone;

/// Longest name, in characters after trimming.
pub const MAX_NAME_CHARS: usize = 50;
/// Longest school name.
pub const MAX_SCHOOL_CHARS: usize = 100;
/// Longest grade text (`3`, `고2`, `중학교 3학년`).
pub const MAX_GRADE_CHARS: usize = 20;
/// How much of an offending value an error message quotes.
const QUOTE_CHARS: usize = 30;

/// A valid student row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StudentRow {
    /// The sheet's 1-based row number.
    pub row: u32,
    /// Trimmed, 1 to 50 characters, no control characters.
    pub name: String,
    pub phone: Option<Phone>,
    pub parent_phone: Phone,
    pub school: Option<String>,
    pub grade: Option<String>,
}

/// What makes two rows the same student: the enrolment step's duplicate key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Identity {
    pub name: String,
    pub parent_phone: Phone,
}

impl StudentRow {
    /// `(trimmed name, normalised parent phone)`.
    pub fn identity(&self) -> Identity {
        Identity {
            name: self.name.clone(),
            parent_phone: self.parent_phone.clone(),
        }
    }
}

/// One reason a row was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("이름이 비어 있습니다")]
    NameMissing,
    #[error("이름이 너무 깁니다(최대 {MAX_NAME_CHARS}자)")]
    NameTooLong,
    #[error("이름에 쓸 수 없는 값이 있습니다: {0}")]
    NameInvalid(String),
    #[error("부모 전화번호가 비어 있습니다")]
    ParentPhoneMissing,
    #[error("부모 전화번호가 휴대폰 번호(010-1234-5678) 형식이 아닙니다: {0}")]
    ParentPhoneInvalid(String),
    #[error("학생 전화번호가 휴대폰 번호(010-1234-5678) 형식이 아닙니다: {0}")]
    PhoneInvalid(String),
    #[error("학교 이름이 너무 길거나(최대 {MAX_SCHOOL_CHARS}자) 쓸 수 없는 값이 있습니다")]
    SchoolInvalid,
    #[error("학년이 너무 길거나(최대 {MAX_GRADE_CHARS}자) 쓸 수 없는 값이 있습니다")]
    GradeInvalid,
}

impl RowProblem {
    /// The field the problem is about.
    pub fn field(&self) -> Field {
        match self {
            RowProblem::NameMissing | RowProblem::NameTooLong | RowProblem::NameInvalid(_) => {
                Field::Name
            }
            RowProblem::ParentPhoneMissing | RowProblem::ParentPhoneInvalid(_) => {
                Field::ParentPhone
            }
            RowProblem::PhoneInvalid(_) => Field::Phone,
            RowProblem::SchoolInvalid => Field::School,
            RowProblem::GradeInvalid => Field::Grade,
        }
    }
}

/// A refused row, as `failed[{row, name, error}]` of the import result shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The sheet's 1-based row number.
    pub row: u32,
    /// The name as given (trimmed, control characters blanked, cut at 60 characters); may be
    /// empty.
    pub name: String,
    /// Every problem of the row, in Korean, joined by `; `.
    pub error: String,
    /// The same problems, for code.
    #[serde(skip)]
    pub problems: Vec<RowProblem>,
}

/// Validates one data row against the header map.
pub fn validate(row: &GridRow, header: &HeaderMap) -> Result<StudentRow, RowError> {
    let cell = |f: Field| header.column(f).and_then(|c| row.get(c));
    let mut problems = Vec::new();

    let name_cell = cell(Field::Name);
    let name = match name_cell {
        None => {
            problems.push(RowProblem::NameMissing);
            None
        }
        Some(Cell::Error(e)) => {
            problems.push(RowProblem::NameInvalid(quote(e)));
            None
        }
        Some(c) => {
            let n = c.display();
            if n.chars().count() > MAX_NAME_CHARS {
                problems.push(RowProblem::NameTooLong);
                None
            } else if n.chars().any(char::is_control) {
                problems.push(RowProblem::NameInvalid(quote(&n)));
                None
            } else {
                Some(n)
            }
        }
    };

    let parent_phone = match cell(Field::ParentPhone) {
        None => {
            problems.push(RowProblem::ParentPhoneMissing);
            None
        }
        Some(c) => phone(c)
            .map_err(|shown| problems.push(RowProblem::ParentPhoneInvalid(shown)))
            .ok(),
    };
    let phone = match cell(Field::Phone) {
        None => None,
        Some(c) => phone(c)
            .map_err(|shown| problems.push(RowProblem::PhoneInvalid(shown)))
            .ok(),
    };
    let school = text(cell(Field::School), MAX_SCHOOL_CHARS)
        .map_err(|()| problems.push(RowProblem::SchoolInvalid))
        .unwrap_or_default();
    let grade = text(cell(Field::Grade), MAX_GRADE_CHARS)
        .map_err(|()| problems.push(RowProblem::GradeInvalid))
        .unwrap_or_default();

    match (name, parent_phone) {
        (Some(name), Some(parent_phone)) if problems.is_empty() => Ok(StudentRow {
            row: row.number,
            name,
            phone,
            parent_phone,
            school,
            grade,
        }),
        _ => Err(RowError {
            row: row.number,
            name: name_cell.map(shown_name).unwrap_or_default(),
            error: problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            problems,
        }),
    }
}

/// A phone cell, or the value to quote in the error.
fn phone(c: &Cell) -> Result<Phone, String> {
    let parsed = match c {
        Cell::Int(i) if *i < 0 => return Err(quote(&c.display())),
        Cell::Int(i) => Phone::parse(&i.to_string()),
        Cell::Float(f) => Phone::from_number(*f),
        Cell::Text(s) => Phone::parse(s),
        Cell::Bool(_) | Cell::Error(_) => return Err(quote(&c.display())),
    };
    parsed.map_err(|_| quote(&c.display()))
}

/// An optional free-text field: `Ok(None)` when blank, `Err` when too long or not printable.
fn text(c: Option<&Cell>, max: usize) -> Result<Option<String>, ()> {
    let Some(c) = c else { return Ok(None) };
    if matches!(c, Cell::Error(_)) {
        return Err(());
    }
    let s = c.display();
    if s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(());
    }
    Ok(Some(s))
}

/// The name cell as the error report shows it.
fn shown_name(c: &Cell) -> String {
    printable(&c.display(), 60)
}

/// A value quoted in an error message.
fn quote(s: &str) -> String {
    printable(s, QUOTE_CHARS)
}

/// Control characters blanked, cut at `max` characters with an ellipsis.
fn printable(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.pop();
        out.push('…');
    }
    out
}
