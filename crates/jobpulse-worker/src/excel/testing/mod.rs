//! Student workbooks for tests, generated together with what a correct import must find.
//!
//! [`generate_students_workbook`] writes an .xlsx from a [`WorkbookSpec`] (how many valid,
//! duplicate, invalid and blank rows; title rows; header spellings; column order; phone
//! spellings) and returns the [`Expected`] outcome, computed from the spec while the rows are
//! written — never by running the parser — so a test comparing the two can fail.
//!
//! Rows can be marked pre-existing: their identities are returned so an enrolment test can put
//! those students (soft-deleted or not) in the database before importing.
//!
//! [`hostile`] writes workbooks built to cost memory (a huge cell, one long string repeated in
//! many cells, a huge shared-strings table, many cells), for the memory bounds' tests.
//!
//! The submodules: `spellings` (names, numbers, header texts and the ways people type them) and
//! `write` (the workbook and its expected outcome, row by row).

pub mod hostile;
mod spellings;
mod write;

pub use self::write::generate_students_workbook;
use super::import::Field;

/// How header texts are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `이름`, `학생 전화번호`, `부모 전화번호`, `학교`, `학년`.
    Canonical,
    /// `Name`, `Student phone`, `Parent phone`, `School`, `Grade`.
    English,
    /// A recognised variant per field, chosen by the seed.
    Random,
}

/// What to generate. Counts are rows; the total of data rows is
/// `valid + duplicates + bad_parent_phone + bad_student_phone + missing_name +
/// missing_parent_phone`, with `blank` blank rows among them.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkbookSpec {
    pub seed: u64,
    /// Distinct valid students (each identity's first row).
    pub valid: u32,
    /// Of `valid`, how many share an earlier student's parent phone (siblings: not duplicates).
    pub siblings: u32,
    /// Of `valid`, how many are marked as already in the database.
    pub pre_existing: u32,
    /// Extra valid rows repeating an earlier student's identity (spelled differently).
    pub duplicates: u32,
    pub bad_parent_phone: u32,
    pub bad_student_phone: u32,
    pub missing_name: u32,
    pub missing_parent_phone: u32,
    /// Blank rows between data rows (never after the last one).
    pub blank: u32,
    /// Title rows above the header (at most 4, so the header is within the first 5 rows).
    pub title_rows: u32,
    pub header_style: HeaderStyle,
    pub shuffle_columns: bool,
    /// Adds `번호` and `비고` columns, which the import ignores.
    pub extra_columns: bool,
    /// Writes some phones as number cells (`1012345678`, leading 0 lost).
    pub numeric_phones: bool,
}

impl WorkbookSpec {
    /// `n` valid rows under a canonical header, nothing else.
    pub fn valid_rows(n: u32) -> Self {
        Self {
            seed: 1,
            valid: n,
            siblings: 0,
            pre_existing: 0,
            duplicates: 0,
            bad_parent_phone: 0,
            bad_student_phone: 0,
            missing_name: 0,
            missing_parent_phone: 0,
            blank: 0,
            title_rows: 0,
            header_style: HeaderStyle::Canonical,
            shuffle_columns: false,
            extra_columns: false,
            numeric_phones: false,
        }
    }

    /// The 2 000-row sheet of the issue: duplicates, blank rows, bad rows, siblings, and
    /// students who already exist (some soft-deleted, in the enrolment test), under title rows,
    /// with shuffled columns and varied headers and phone spellings.
    pub fn issue_2000() -> Self {
        Self {
            seed: 2000,
            valid: 1_880,
            siblings: 40,
            pre_existing: 30,
            duplicates: 50,
            bad_parent_phone: 20,
            bad_student_phone: 10,
            missing_name: 15,
            missing_parent_phone: 15,
            blank: 10,
            title_rows: 2,
            header_style: HeaderStyle::Random,
            shuffle_columns: true,
            extra_columns: true,
            numeric_phones: true,
        }
    }

    /// Non-blank rows below the header.
    pub fn data_rows(&self) -> u32 {
        self.valid
            + self.duplicates
            + self.bad_parent_phone
            + self.bad_student_phone
            + self.missing_name
            + self.missing_parent_phone
    }
}

/// Why a generated invalid row must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    BadParentPhone,
    BadStudentPhone,
    MissingName,
    MissingParentPhone,
}

impl InvalidKind {
    /// The field at fault.
    pub fn field(self) -> Field {
        match self {
            InvalidKind::BadParentPhone | InvalidKind::MissingParentPhone => Field::ParentPhone,
            InvalidKind::BadStudentPhone => Field::Phone,
            InvalidKind::MissingName => Field::Name,
        }
    }
}

/// A row that must import, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedStudent {
    pub row: u32,
    pub name: String,
    pub phone: Option<String>,
    pub parent_phone: String,
    pub school: Option<String>,
    pub grade: Option<String>,
}

impl ExpectedStudent {
    /// `(name, parent phone)`, as `StudentRow::identity` has it.
    pub fn identity(&self) -> (String, String) {
        (self.name.clone(), self.parent_phone.clone())
    }
}

/// A row that must be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedInvalid {
    pub row: u32,
    pub kind: InvalidKind,
    /// The name as the error report must show it (empty when missing).
    pub name: String,
}

/// What a correct import of the generated workbook finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// 1-based sheet row of the header.
    pub header_row: u32,
    /// Header texts in column order.
    pub headers: Vec<String>,
    /// Non-blank rows below the header.
    pub data_rows: u32,
    /// Blank rows between the header and the last data row.
    pub blank_rows: u32,
    /// Every row that must parse, in sheet order (first rows and repeats).
    pub students: Vec<ExpectedStudent>,
    /// `(row, row of the identity's first occurrence)` of each repeat, in sheet order.
    pub duplicates: Vec<(u32, u32)>,
    /// Refused rows, in sheet order.
    pub invalid: Vec<ExpectedInvalid>,
    /// Students marked as already in the database (first rows only).
    pub pre_existing: Vec<ExpectedStudent>,
}

impl Expected {
    /// Distinct valid students.
    pub fn unique(&self) -> usize {
        self.students.len() - self.duplicates.len()
    }
}

/// A workbook and its expected outcome.
#[derive(Debug, Clone)]
pub struct Generated {
    pub bytes: Vec<u8>,
    pub expected: Expected,
}
