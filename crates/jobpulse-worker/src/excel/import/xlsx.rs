//! Reading the first worksheet of an .xlsx into a [`Grid`], within [`Limits`].
//!
//! Cells are streamed (calamine's cell reader), not loaded as a `Range`: a `Range` allocates the
//! bounding box of the used cells, so one stray cell at `XFD1048576` would ask for billions of
//! cells. Here memory follows the cells actually present, and reading stops as soon as a limit is
//! passed.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use calamine::{DataRef, Reader, SheetType, SheetVisible, Xlsx};

use super::error::{HEADER_WINDOW, ImportError, Limits};
use super::grid::{Cell, Grid, GridBuilder};
use super::{Phase, Progress, READ_SHARE};

/// Report reading progress every this many rows.
const PROGRESS_EVERY: usize = 250;

/// Most zip entries an .xlsx may have (a plain workbook has about a dozen).
const MAX_ZIP_ENTRIES: usize = 10_000;

/// The first bytes of an OLE2 compound file: the Excel 97-2003 `.xls` format.
const OLE2_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Reads the first visible worksheet (the first worksheet when none is visible).
pub fn read_xlsx(
    bytes: &[u8],
    limits: &Limits,
    progress: &mut dyn FnMut(Progress),
) -> Result<Grid, ImportError> {
    if bytes.starts_with(&OLE2_MAGIC) {
        return Err(ImportError::LegacyXls);
    }
    check_zip_directory(bytes, limits)?;
    // calamine parses untrusted XML; a panic inside it must become a refused file, not a dead
    // worker. (The callback runs inside too; a panic there is reported the same way.)
    catch_unwind(AssertUnwindSafe(|| read_cells(bytes, limits, progress))).unwrap_or_else(|_| {
        Err(ImportError::Unreadable {
            detail: "the spreadsheet parser panicked".to_owned(),
        })
    })
}

fn unreadable(e: impl std::fmt::Display) -> ImportError {
    ImportError::Unreadable {
        detail: e.to_string(),
    }
}

/// Refuses zip bombs by the sizes the archive declares, before anything is unpacked.
fn check_zip_directory(bytes: &[u8], limits: &Limits) -> Result<(), ImportError> {
    let zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(unreadable)?;
    let meta = zip.metadata();
    if meta.len() > MAX_ZIP_ENTRIES {
        return Err(ImportError::TooLarge {
            what: format!("파일 안의 항목 {}개", meta.len()),
        });
    }
    let mut total: u64 = 0;
    for i in 0..meta.len() {
        let entry = meta.entry(i).map_err(unreadable)?;
        if entry.size() > limits.max_part_bytes {
            return Err(ImportError::TooLarge {
                what: format!(
                    "{} 압축을 푼 크기 {} MB, 최대 {} MB",
                    entry
                        .name()
                        .map(|n| n.chars().take(80).collect::<String>())
                        .unwrap_or_default(),
                    entry.size() / (1024 * 1024),
                    limits.max_part_bytes / (1024 * 1024)
                ),
            });
        }
        total = total.saturating_add(entry.size());
    }
    if total > limits.max_unpacked_bytes {
        return Err(ImportError::TooLarge {
            what: format!(
                "압축을 푼 크기 {} MB, 최대 {} MB",
                total / (1024 * 1024),
                limits.max_unpacked_bytes / (1024 * 1024)
            ),
        });
    }
    Ok(())
}

fn read_cells(
    bytes: &[u8],
    limits: &Limits,
    progress: &mut dyn FnMut(Progress),
) -> Result<Grid, ImportError> {
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(unreadable)?;
    let sheets = book.sheets_metadata();
    let worksheets = || sheets.iter().filter(|s| s.typ == SheetType::WorkSheet);
    let name = worksheets()
        .find(|s| s.visible == SheetVisible::Visible)
        .or_else(|| worksheets().next())
        .map(|s| s.name.clone())
        .ok_or(ImportError::NoSheet)?;

    let mut cells = book.worksheet_cells_reader(&name).map_err(unreadable)?;
    // The sheet's own claim of its extent, only used to draw progress.
    let declared_rows = cells.dimensions().end.0.saturating_add(1);
    let total = (declared_rows > 1 && declared_rows <= limits.max_data_rows.saturating_mul(2))
        .then_some(declared_rows);
    let row_limit = usize::try_from(limits.max_data_rows)
        .unwrap_or(usize::MAX)
        .saturating_add(HEADER_WINDOW);

    let mut grid = GridBuilder::default();
    let mut reported = 0;
    while let Some(cell) = cells.next_cell().map_err(unreadable)? {
        let (row, col) = cell.get_position();
        let Some(value) = convert(cell.get_value()) else {
            continue;
        };
        if col >= limits.max_columns {
            continue;
        }
        if let Cell::Text(t) = &value
            && t.chars().count() > limits.max_cell_chars
        {
            return Err(ImportError::TooLarge {
                what: format!(
                    "{}행 칸 하나에 {}자, 최대 {}자",
                    row.saturating_add(1),
                    t.chars().count(),
                    limits.max_cell_chars
                ),
            });
        }
        let Some(number) = row.checked_add(1) else {
            continue;
        };
        grid.push(number, col, value);
        if grid.row_count() > row_limit {
            // More non-blank rows than the header window plus the limit: too many whatever the
            // header row turns out to be.
            return Err(ImportError::TooManyRows {
                max: limits.max_data_rows,
                found: u32::try_from(grid.row_count() - HEADER_WINDOW).unwrap_or(u32::MAX),
                exact: false,
            });
        }
        if grid.cell_count() > limits.max_cells {
            return Err(ImportError::TooLarge {
                what: format!("채워진 칸 {}개 초과", limits.max_cells),
            });
        }
        if grid.row_count() >= reported + PROGRESS_EVERY {
            reported = grid.row_count();
            let done = u32::try_from(reported).unwrap_or(u32::MAX);
            let fraction = total.map_or(0.0, |t| {
                READ_SHARE * (f64::from(done) / f64::from(t)).min(1.0)
            });
            progress(Progress {
                phase: Phase::Reading,
                rows_done: done,
                rows_total: total,
                fraction,
            });
        }
    }
    Ok(grid.finish())
}

fn convert(v: &DataRef<'_>) -> Option<Cell> {
    match v {
        DataRef::Empty => None,
        DataRef::String(s) => Cell::text(s.as_str()),
        DataRef::SharedString(s) => Cell::text(*s),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cell::text(s.as_str()),
        DataRef::Int(i) => Some(Cell::Int(*i)),
        DataRef::Float(f) => Some(Cell::Float(*f)),
        // A date-formatted number is still the number the user typed.
        DataRef::DateTime(d) => Some(Cell::Float(d.as_f64())),
        DataRef::Bool(b) => Some(Cell::Bool(*b)),
        DataRef::Error(e) => Some(Cell::Error(e.to_string())),
    }
}
