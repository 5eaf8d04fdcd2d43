//! Reading the first worksheet of an .xlsx into a [`Grid`], within [`Limits`].
//!
//! Cells are streamed (calamine's cell reader), not loaded as a `Range`: a `Range` allocates the
//! bounding box of the used cells, so one stray cell at `XFD1048576` would ask for billions of
//! cells. Here memory follows the cells actually present, and reading stops as soon as a limit is
//! passed.

use std::io::{Cursor, Read};
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
    check_shared_strings(bytes, limits)?;
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

/// Refuses a shared-strings table with more strings than [`Limits::max_shared_strings`], by a
/// streaming scan of the unpacked part (constant memory) before the parser reads it. The parser
/// keeps every shared string for the whole read (about 40 bytes each beyond the text, so a
/// 16 MiB part of one-character strings would cost ~40 MB), and it reserves room for the count
/// the file declares (`uniqueCount`) up front: a declared count of 10^13 was an allocation
/// failure that aborts the process, not an error.
fn check_shared_strings(bytes: &[u8], limits: &Limits) -> Result<(), ImportError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(unreadable)?;
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(unreadable)?;
        if !entry.name().is_ok_and(|n| n.ends_with("sharedStrings.xml")) {
            continue;
        }
        let (declared, found) = scan_shared_strings(entry, limits.max_shared_strings)?;
        let count = declared.max(found);
        if count > limits.max_shared_strings {
            return Err(ImportError::TooLarge {
                what: format!(
                    "서로 다른 글자 칸 {}개 이상, 최대 {}개",
                    count, limits.max_shared_strings
                ),
            });
        }
    }
    Ok(())
}

/// The count a shared-strings part declares (`uniqueCount`, 0 when absent) and the `<si>`
/// elements it holds, counted up to one past `max`.
fn scan_shared_strings(mut part: impl Read, max: u64) -> Result<(u64, u64), ImportError> {
    let mut chunk = vec![0u8; 64 * 1024];
    // A tag cut by the end of the previous read, carried into the next.
    let mut window = Vec::with_capacity(chunk.len() + MAX_TAG_NAME);
    let mut declared = None;
    let mut found = 0u64;
    loop {
        let n = part.read(&mut chunk).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        window.extend_from_slice(&chunk[..n]);
        if declared.is_none() && found == 0 {
            // The `<sst>` tag opens the part, before any string.
            declared = declared_count(&window);
        }
        let (count, cut) = count_si(&window);
        found += count;
        if found > max {
            break;
        }
        window.drain(..cut);
    }
    Ok((declared.unwrap_or(0), found))
}

/// Longest tag name looked at (`si`, perhaps with a namespace prefix).
const MAX_TAG_NAME: usize = 64;

/// Start tags whose local name is `si` (`<si>`, `<si …>`, `<x:si>`) in `window`, and where the
/// unread rest starts: at a tag whose name the window cuts, else at the end.
fn count_si(window: &[u8]) -> (u64, usize) {
    let mut n = 0;
    let mut at = 0;
    while let Some(lt) = window[at..].iter().position(|b| *b == b'<') {
        let start = at + lt + 1;
        let end = window[start..]
            .iter()
            .take(MAX_TAG_NAME)
            .position(|b| matches!(b, b'>' | b'/' | b' ' | b'\t' | b'\r' | b'\n'));
        let Some(len) = end else {
            if window.len() - start < MAX_TAG_NAME {
                // Cut by the end of this read: looked at again with the next.
                return (n, start - 1);
            }
            at = start;
            continue;
        };
        let name = &window[start..start + len];
        let local = name.rsplit(|b| *b == b':').next().unwrap_or(name);
        if local == b"si" && len > 0 {
            n += 1;
        }
        at = start + len;
    }
    (n, window.len())
}

/// The `uniqueCount` attribute of the `<sst>` start tag, when the tag is whole in `window`:
/// saturating, so that an absurd number is simply over the limit.
fn declared_count(window: &[u8]) -> Option<u64> {
    let open = window.windows(4).position(|w| w == b"sst ")?;
    let tag = &window[open..];
    let tag = &tag[..tag.iter().position(|b| *b == b'>')?];
    let key = b"uniqueCount=";
    let at = tag.windows(key.len()).position(|w| w == key)?;
    let digits = tag[at + key.len()..]
        .iter()
        .skip(1)
        .take_while(|b| b.is_ascii_digit());
    Some(digits.fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
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
    // Text kept so far: every cell's text is copied into the grid, so one shared string repeated
    // in many cells costs its length each time. Counted before the copy is made.
    let mut text_bytes: u64 = 0;
    while let Some(cell) = cells.next_cell().map_err(unreadable)? {
        let (row, col) = cell.get_position();
        if col >= limits.max_columns {
            continue;
        }
        let raw = cell.get_value();
        if let Some(text) = text_of(raw) {
            let chars = text.chars().count();
            if chars > limits.max_cell_chars {
                return Err(ImportError::TooLarge {
                    what: format!(
                        "{}행 칸 하나에 {}자, 최대 {}자",
                        row.saturating_add(1),
                        chars,
                        limits.max_cell_chars
                    ),
                });
            }
            text_bytes = text_bytes.saturating_add(text.len() as u64);
            if text_bytes > limits.max_text_bytes {
                return Err(ImportError::TooLarge {
                    what: format!(
                        "칸의 글자가 모두 {} MB 초과 ({}행까지)",
                        limits.max_text_bytes / (1024 * 1024),
                        row.saturating_add(1)
                    ),
                });
            }
        }
        let Some(value) = convert(raw) else {
            continue;
        };
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

/// The text a cell would copy into the grid, measured before [`convert`] allocates it.
fn text_of<'a>(v: &'a DataRef<'_>) -> Option<&'a str> {
    match v {
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Some(s),
        DataRef::SharedString(s) => Some(s),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_strings_are_counted_across_chunk_boundaries() -> Result<(), ImportError> {
        // 100 000 strings: the 64 KiB reads split some `<si>` tags.
        let mut xml = String::from(r#"<sst xmlns="x" count="3" uniqueCount="7">"#);
        for i in 0..100_000 {
            xml.push_str(&format!("<si><t>{i}</t></si>"));
        }
        xml.push_str("<x:si a=\"1\"><t>y</t></x:si><sis>no</sis></sst>");
        let (declared, found) = scan_shared_strings(xml.as_bytes(), u64::MAX)?;
        assert_eq!((declared, found), (7, 100_001));
        let (_, early) = scan_shared_strings(xml.as_bytes(), 10)?;
        assert!(
            early > 10 && early < 100_001,
            "stops soon after the limit: {early}"
        );
        Ok(())
    }

    #[test]
    fn an_absurd_declared_count_saturates() {
        assert_eq!(
            declared_count(br#"<sst uniqueCount="99999999999999999999999999">"#),
            Some(u64::MAX)
        );
        assert_eq!(declared_count(b"<sst count='5'>"), None);
        assert_eq!(declared_count(b"<sst uniqueCount='12'>"), Some(12));
        // Only the tag's attribute counts, not a string that spells one.
        assert_eq!(
            declared_count(b"<sst count='1'><si><t>uniqueCount='9'</t></si>"),
            None
        );
        assert_eq!(declared_count(b"<x:sst uniqueCount=\"3\">"), Some(3));
    }
}
