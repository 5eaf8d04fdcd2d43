//! Parsing an uploaded student sheet (.xlsx) into validated student rows.
//!
//! The first worksheet holds one header row — one of the first [`HEADER_WINDOW`] non-blank rows,
//! after any title rows — then one student per row. Headers are recognised in Korean and English,
//! in any order ([`header`]); name and parent phone are required columns. A file that cannot be
//! imported at all is an [`ImportError`]; a row that cannot is a [`RowError`] and the rest of the
//! sheet still imports. Fully blank rows are skipped silently.
//!
//! The work is split so a job can draw the parsing step's percent: [`read_xlsx`] streams the
//! sheet into a [`Grid`] (the slow part), [`parse_grid`] finds the header, and [`Parsed::rows`]
//! validates row by row. [`import_xlsx`] runs all three and reports [`Progress`] along the way.
//! See docs/excel-import.md for the accepted headers and messages.

mod error;
mod grid;
pub mod header;
mod row;
mod xlsx;

use std::collections::HashMap;
use std::path::Path;

pub use error::{HEADER_WINDOW, ImportError, Limits};
pub use grid::{Cell, Grid, GridRow};
pub use header::{Field, HeaderMap};
pub use row::{
    Identity, MAX_GRADE_CHARS, MAX_NAME_CHARS, MAX_SCHOOL_CHARS, RowError, RowProblem, StudentRow,
};
pub use xlsx::read_xlsx;

/// Share of the parsing step spent reading the file; validation is the rest.
const READ_SHARE: f64 = 0.8;

/// Report validation progress every this many rows.
const PROGRESS_EVERY: usize = 250;

/// Which part of the parse is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Unpacking and streaming the sheet's cells.
    Reading,
    /// Checking each student row.
    Validating,
}

/// A progress report of the parse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub phase: Phase,
    /// Non-blank rows read so far, or data rows validated so far.
    pub rows_done: u32,
    /// What `rows_done` counts towards, when known (while reading, the sheet's own claim of its
    /// size, which may be absent).
    pub rows_total: Option<u32>,
    /// The whole parse's completion, 0.0..=1.0, never decreasing: feed it to the parsing step's
    /// percent.
    pub fraction: f64,
}

/// A sheet whose header was found, ready to validate.
#[derive(Debug, Clone)]
pub struct Parsed<'g> {
    pub header: HeaderMap,
    data: &'g [GridRow],
}

impl<'g> Parsed<'g> {
    /// Number of data rows (non-blank rows below the header).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Blank rows between the header and the last data row (skipped; trailing blank rows do not
    /// exist in a sheet's eyes).
    pub fn blank_rows(&self) -> u32 {
        self.data.last().map_or(0, |last| {
            let span = last.number.saturating_sub(self.header.row);
            span.saturating_sub(u32::try_from(self.data.len()).unwrap_or(u32::MAX))
        })
    }

    /// Each data row, validated, in sheet order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Result<StudentRow, RowError>> + '_ {
        self.data.iter().map(|r| row::validate(r, &self.header))
    }
}

/// Finds the header row and checks the required columns and the row limit.
///
/// The header is the first of the first [`HEADER_WINDOW`] non-blank rows that has every required
/// column, or else the first that has a name column (whose missing columns are then reported).
pub fn parse_grid<'g>(grid: &'g Grid, limits: &Limits) -> Result<Parsed<'g>, ImportError> {
    let rows = grid.rows();
    if rows.is_empty() {
        return Err(ImportError::EmptySheet);
    }
    let window = &rows[..rows.len().min(HEADER_WINDOW)];
    let maps: Vec<HeaderMap> = window.iter().map(header_map).collect();
    // A complete header wins over an earlier row that merely contains a name word (a title row
    // reading `학생` or `성명`).
    let has_name = |m: &HeaderMap| m.column(Field::Name).is_some();
    let complete = maps
        .iter()
        .position(|m| has_name(m) && m.missing().is_empty());
    let Some(at) = complete.or_else(|| maps.iter().position(has_name)) else {
        // No row names the name column: show the row that looked most like a header.
        let best = maps
            .iter()
            .enumerate()
            .max_by_key(|(i, m)| (m.columns.len(), std::cmp::Reverse(*i)))
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        return Err(ImportError::MissingColumns {
            missing: best.missing(),
            found_headers: best.headers,
        });
    };
    let header = maps[at].clone();
    let missing = header.missing();
    if !missing.is_empty() {
        return Err(ImportError::MissingColumns {
            missing,
            found_headers: header.headers,
        });
    }
    let data = &rows[at + 1..];
    if data.len() > usize::try_from(limits.max_data_rows).unwrap_or(usize::MAX) {
        return Err(ImportError::TooManyRows {
            max: limits.max_data_rows,
            found: u32::try_from(data.len()).unwrap_or(u32::MAX),
            exact: true,
        });
    }
    Ok(Parsed { header, data })
}

fn header_map(row: &GridRow) -> HeaderMap {
    let texts: Vec<(u32, String)> = row.cells.iter().map(|(c, v)| (*c, v.display())).collect();
    HeaderMap::from_cells(row.number, texts.iter().map(|(c, t)| (*c, t.as_str())))
}

/// The outcome of a whole parse.
#[derive(Debug, Clone)]
pub struct Import {
    pub header: HeaderMap,
    /// One entry per data row, in sheet order.
    pub rows: Vec<Result<StudentRow, RowError>>,
    /// Blank rows skipped between the header and the last data row.
    pub blank_rows: u32,
}

/// Rows split by identity: the first row of each identity, and the later rows repeating one.
#[derive(Debug, Clone, Default)]
pub struct Dedup<'a> {
    pub unique: Vec<&'a StudentRow>,
    /// A repeated row and the row number of its identity's first row.
    pub duplicates: Vec<(&'a StudentRow, u32)>,
}

impl Import {
    pub fn students(&self) -> impl Iterator<Item = &StudentRow> {
        self.rows.iter().filter_map(|r| r.as_ref().ok())
    }

    pub fn failed(&self) -> impl Iterator<Item = &RowError> {
        self.rows.iter().filter_map(|r| r.as_ref().err())
    }

    /// Splits the valid rows by [`StudentRow::identity`], keeping sheet order.
    pub fn dedup(&self) -> Dedup<'_> {
        let mut first: HashMap<Identity, u32> = HashMap::new();
        let mut out = Dedup::default();
        for s in self.students() {
            match first.get(&s.identity()) {
                Some(&row) => out.duplicates.push((s, row)),
                None => {
                    first.insert(s.identity(), s.row);
                    out.unique.push(s);
                }
            }
        }
        out
    }
}

/// Reads, finds the header and validates every row of an .xlsx, reporting progress.
pub fn import_xlsx(
    bytes: &[u8],
    limits: &Limits,
    mut progress: impl FnMut(Progress),
) -> Result<Import, ImportError> {
    let grid = read_xlsx(bytes, limits, &mut progress)?;
    let parsed = parse_grid(&grid, limits)?;
    let total = parsed.len();
    let total32 = u32::try_from(total).unwrap_or(u32::MAX);
    let mut rows = Vec::with_capacity(total);
    for (i, r) in parsed.rows().enumerate() {
        rows.push(r);
        let done = i + 1;
        if done % PROGRESS_EVERY == 0 || done == total {
            let done32 = u32::try_from(done).unwrap_or(u32::MAX);
            progress(Progress {
                phase: Phase::Validating,
                rows_done: done32,
                rows_total: Some(total32),
                fraction: READ_SHARE + (1.0 - READ_SHARE) * f64::from(done32) / f64::from(total32),
            });
        }
    }
    if total == 0 {
        progress(Progress {
            phase: Phase::Validating,
            rows_done: 0,
            rows_total: Some(0),
            fraction: 1.0,
        });
    }
    Ok(Import {
        blank_rows: parsed.blank_rows(),
        header: parsed.header,
        rows,
    })
}

/// [`import_xlsx`] on a file.
pub fn import_path(
    path: &Path,
    limits: &Limits,
    progress: impl FnMut(Progress),
) -> Result<Import, ImportError> {
    let bytes = std::fs::read(path)?;
    import_xlsx(&bytes, limits, progress)
}
