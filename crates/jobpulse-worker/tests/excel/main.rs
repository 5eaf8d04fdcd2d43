//! The excel import, export and credentials, end to end on real .xlsx bytes.
//!
//! - `sheets`: header variants, column orders, title rows, number cells, every row error, blank
//!   rows, limits, and the 2 000-row sheet of the issue.
//! - `fuzz`: random grids, random bytes, damaged zips and damaged XML never panic.
//! - `attendance`: the attendance export read back with calamine.
//! - `logins`: password and login id properties, hashing.

mod attendance;
mod fuzz;
mod logins;
mod sheets;

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::num::NonZeroUsize;

use calamine::{Data, Reader, Xlsx};
use jobpulse_worker::excel::Phone;
use jobpulse_worker::excel::credentials::{
    self, DETERMINISTIC_ATTEMPTS, LOGIN_ALPHABET, PASSWORD_ALPHABET, PASSWORD_LEN,
};
use jobpulse_worker::excel::export::{self, SessionInfo, StudentInfo};
use jobpulse_worker::excel::import::{
    self, Cell, Field, Grid, Import, ImportError, Limits, Phase, Progress, RowProblem,
};
use jobpulse_worker::excel::testing::{
    Expected, HeaderStyle, InvalidKind, WorkbookSpec, generate_students_workbook,
};
use proptest::prelude::*;
use rust_xlsxwriter::Workbook;

/// A cell to write in a hand-made sheet.
#[derive(Clone, Copy)]
enum V<'a> {
    S(&'a str),
    N(f64),
    Empty,
}
use V::{Empty, N, S};

/// An .xlsx whose first sheet holds `rows` from A1.
fn xlsx(rows: &[Vec<V<'_>>]) -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            match v {
                S(s) => {
                    sheet.write_string(r, c, *s).expect("writes");
                }
                N(n) => {
                    sheet.write_number(r, c, *n).expect("writes");
                }
                Empty => {}
            }
        }
    }
    book.save_to_buffer().expect("saves")
}

fn import(bytes: &[u8]) -> Result<Import, ImportError> {
    import::import_xlsx(bytes, &Limits::default(), |_| {})
}

fn must_import(bytes: &[u8]) -> Import {
    import(bytes).unwrap_or_else(|e| panic!("import failed: {e}"))
}

/// Checks an import against a generator's expectation, field by field.
fn assert_matches(got: &Import, want: &Expected) {
    assert_eq!(got.header.row, want.header_row, "header row");
    assert_eq!(got.header.headers, want.headers, "header texts");
    assert_eq!(got.rows.len() as u32, want.data_rows, "data rows");
    assert_eq!(got.blank_rows, want.blank_rows, "blank rows");

    let students: Vec<_> = got.students().collect();
    assert_eq!(students.len(), want.students.len(), "valid rows");
    for (s, w) in students.iter().zip(&want.students) {
        assert_eq!(s.row, w.row);
        assert_eq!(s.name, w.name, "row {}", w.row);
        assert_eq!(s.parent_phone.as_str(), w.parent_phone, "row {}", w.row);
        assert_eq!(
            s.phone.as_ref().map(Phone::as_str),
            w.phone.as_deref(),
            "row {}",
            w.row
        );
        assert_eq!(s.school, w.school, "row {}", w.row);
        assert_eq!(s.grade, w.grade, "row {}", w.row);
    }

    let failed: Vec<_> = got.failed().collect();
    assert_eq!(failed.len(), want.invalid.len(), "invalid rows");
    for (f, w) in failed.iter().zip(&want.invalid) {
        assert_eq!(f.row, w.row);
        assert_eq!(f.name, w.name, "row {}", w.row);
        assert_eq!(f.problems.len(), 1, "row {}: {:?}", w.row, f.problems);
        assert_eq!(f.problems[0].field(), w.kind.field(), "row {}", w.row);
        let missing = matches!(
            f.problems[0],
            RowProblem::NameMissing | RowProblem::ParentPhoneMissing
        );
        let want_missing = matches!(
            w.kind,
            InvalidKind::MissingName | InvalidKind::MissingParentPhone
        );
        assert_eq!(missing, want_missing, "row {}: {:?}", w.row, f.problems);
        assert!(!f.error.is_empty());
    }

    let dedup = got.dedup();
    let dups: Vec<(u32, u32)> = dedup.duplicates.iter().map(|(s, r)| (s.row, *r)).collect();
    assert_eq!(dups, want.duplicates, "duplicates");
    assert_eq!(dedup.unique.len(), want.unique(), "unique students");
}
