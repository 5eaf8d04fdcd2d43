//! The attendance workbook of one lecture: a title row, a header row (번호, 이름, 학교, 학년,
//! 학생 전화번호, 부모 전화번호, then one column per session), and one row per student with that
//! student's attendance marks.
//!
//! The header row and the number and name columns are frozen and the header carries an autofilter,
//! so a long roster stays readable. Every value is written as a string cell (never a formula), so
//! a name such as `=HYPERLINK(…)` stays text.

use std::collections::BTreeMap;

use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook, XlsxError};

/// Fixed columns before the session columns.
pub const FIXED_HEADERS: [&str; 6] = [
    "번호",
    "이름",
    "학교",
    "학년",
    "학생 전화번호",
    "부모 전화번호",
];
/// The worksheet's name (the lecture title is user text and goes in the title row instead).
pub const SHEET_NAME: &str = "출석부";
/// 0-based row of the title, of the header, and of the first student.
pub const TITLE_ROW: u32 = 0;
pub const HEADER_ROW: u32 = 1;
pub const FIRST_STUDENT_ROW: u32 = 2;

/// Excel's limits.
const MAX_COLUMNS: usize = 16_384;
const MAX_ROWS: usize = 1_048_576;
const MAX_CELL_CHARS: usize = 32_767;

/// One session (class meeting) of the lecture: one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: i64,
    pub title: String,
    /// Shown under the title when present, e.g. `2024-03-02`.
    pub date: Option<String>,
}

/// One student: one row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudentInfo {
    pub name: String,
    pub school: Option<String>,
    pub grade: Option<String>,
    pub phone: Option<String>,
    pub parent_phone: Option<String>,
    /// Mark per session id, e.g. `출석`, `지각`, `결석`; sessions without a mark stay empty.
    pub attendance: BTreeMap<i64, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("too many sessions for one sheet: {count} (at most {max})")]
    TooManySessions { count: usize, max: usize },
    #[error("too many students for one sheet: {count} (at most {max})")]
    TooManyStudents { count: usize, max: usize },
    #[error("could not write the workbook: {0}")]
    Xlsx(#[from] XlsxError),
}

/// The header text of a session column.
pub fn session_header(s: &SessionInfo) -> String {
    match &s.date {
        Some(d) if !d.trim().is_empty() => format!("{}\n{}", s.title.trim(), d.trim()),
        _ => s.title.trim().to_owned(),
    }
}

/// Builds the .xlsx and returns its bytes.
pub fn attendance_workbook(
    lecture_title: &str,
    sessions: &[SessionInfo],
    students: &[StudentInfo],
) -> Result<Vec<u8>, ExportError> {
    let max_sessions = MAX_COLUMNS - FIXED_HEADERS.len();
    if sessions.len() > max_sessions {
        return Err(ExportError::TooManySessions {
            count: sessions.len(),
            max: max_sessions,
        });
    }
    let max_students = MAX_ROWS - FIRST_STUDENT_ROW as usize;
    if students.len() > max_students {
        return Err(ExportError::TooManyStudents {
            count: students.len(),
            max: max_students,
        });
    }

    let title_fmt = Format::new()
        .set_bold()
        .set_font_size(14)
        .set_align(FormatAlign::Left)
        .set_align(FormatAlign::VerticalCenter);
    let header_fmt = Format::new()
        .set_bold()
        .set_background_color("#D9E1F2")
        .set_border(FormatBorder::Thin)
        .set_text_wrap()
        .set_align(FormatAlign::Center)
        .set_align(FormatAlign::VerticalCenter);
    let cell_fmt = Format::new().set_border(FormatBorder::Thin);
    let mark_fmt = Format::new()
        .set_border(FormatBorder::Thin)
        .set_align(FormatAlign::Center);

    let headers: Vec<String> = FIXED_HEADERS
        .iter()
        .map(|h| (*h).to_owned())
        .chain(sessions.iter().map(session_header))
        .collect();
    // Fits in u16: at most MAX_COLUMNS, checked above.
    let last_col = (headers.len() - 1) as u16;
    let last_row = FIRST_STUDENT_ROW + students.len().saturating_sub(1) as u32;

    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name(SHEET_NAME)?;

    let title = cell_text(lecture_title.trim());
    let title = if title.is_empty() {
        "출석부".to_owned()
    } else {
        title
    };
    sheet.merge_range(TITLE_ROW, 0, TITLE_ROW, last_col, &title, &title_fmt)?;
    sheet.set_row_height(TITLE_ROW, 24)?;

    let mut widths: Vec<usize> = headers.iter().map(|h| display_width(h)).collect();
    for (col, h) in headers.iter().enumerate() {
        sheet.write_string_with_format(HEADER_ROW, col as u16, cell_text(h), &header_fmt)?;
    }
    if sessions.iter().any(|s| s.date.is_some()) {
        sheet.set_row_height(HEADER_ROW, 30)?;
    }

    for (i, st) in students.iter().enumerate() {
        let row = FIRST_STUDENT_ROW + i as u32;
        sheet.write_number_with_format(row, 0, (i + 1) as f64, &mark_fmt)?;
        let fixed = [
            Some(st.name.as_str()),
            st.school.as_deref(),
            st.grade.as_deref(),
            st.phone.as_deref(),
            st.parent_phone.as_deref(),
        ];
        for (j, value) in fixed.into_iter().enumerate() {
            let col = j + 1;
            let text = cell_text(value.unwrap_or("").trim());
            widths[col] = widths[col].max(display_width(&text));
            sheet.write_string_with_format(row, col as u16, text, &cell_fmt)?;
        }
        for (k, session) in sessions.iter().enumerate() {
            let col = FIXED_HEADERS.len() + k;
            let mark = st.attendance.get(&session.id).map(|m| cell_text(m.trim()));
            let mark = mark.unwrap_or_default();
            widths[col] = widths[col].max(display_width(&mark));
            sheet.write_string_with_format(row, col as u16, mark, &mark_fmt)?;
        }
    }

    for (col, w) in widths.iter().enumerate() {
        // Characters plus padding, within readable bounds.
        let w = (*w + 2).clamp(6, 40);
        sheet.set_column_width(col as u16, w as f64)?;
    }
    sheet.set_freeze_panes(FIRST_STUDENT_ROW, 2)?;
    sheet.autofilter(HEADER_ROW, 0, last_row.max(HEADER_ROW), last_col)?;
    sheet.set_landscape();

    Ok(book.save_to_buffer()?)
}

/// A cell's text within Excel's length limit.
fn cell_text(s: &str) -> String {
    s.chars().take(MAX_CELL_CHARS).collect()
}

/// Width in Excel's character units: Hangul and other wide characters take two. For a header
/// over two lines, the longer line counts.
fn display_width(s: &str) -> usize {
    s.lines()
        .map(|l| l.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum())
        .max()
        .unwrap_or(0)
}
