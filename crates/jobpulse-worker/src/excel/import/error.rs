//! Whole-file import errors and the limits that bound an import.
//!
//! Messages are Korean (the academy front end shows `error_message` as is) and say what to do.
//! Internal details (a parser's own error) stay in fields for the log, out of the message.

use std::fmt::Write as _;

use super::header::Field;

/// How many non-blank rows at the top of the sheet may precede and include the header row (title
/// rows such as `2024학년도 수강생 명단` come first in real academy sheets).
pub const HEADER_WINDOW: usize = 5;

/// Bounds of one import. The caller checks the upload size; these refuse sheets that are absurd
/// once unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most student rows (non-blank rows below the header).
    pub max_data_rows: u32,
    /// Cells right of this many columns are not read (a student sheet has a handful).
    pub max_columns: u32,
    /// Most non-blank cells read in all (about 80 bytes each in the grid: 500 000 cells is the
    /// largest share of an import's memory bound; 20 000 students of 25 columns fit).
    pub max_cells: u64,
    /// Most bytes the .xlsx may unpack to, by its own zip directory.
    pub max_unpacked_bytes: u64,
    /// Most bytes one part (a worksheet, the shared-strings table) may unpack to: the parser
    /// holds a part's strings in memory, so this bounds an import's memory before anything is
    /// parsed (one 120 MB cell once took a worker from 43 MB to 797 MB).
    pub max_part_bytes: u64,
    /// Most characters in one cell (a name or a phone number is a few dozen).
    pub max_cell_chars: usize,
    /// Most bytes of cell text read in all, counted before each cell's text is copied: one
    /// 4 000-character shared string repeated in 200 000 cells would otherwise cost 2.4 GB of
    /// copies from a 516 KB file. 20 000 students of a dozen columns use about 2 MB.
    pub max_text_bytes: u64,
    /// Most strings in the shared-strings table (declared or present): the parser keeps them
    /// all while it reads (about 40 bytes each beyond the text). 20 000 students with ten
    /// distinct texts each fit.
    pub max_shared_strings: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_data_rows: 20_000,
            max_columns: 200,
            max_cells: 500_000,
            max_unpacked_bytes: 64 * 1024 * 1024,
            max_part_bytes: 16 * 1024 * 1024,
            max_cell_chars: 4096,
            max_text_bytes: 8 * 1024 * 1024,
            max_shared_strings: 200_000,
        }
    }
}

/// Why a whole file was refused. Row problems are not here: they are [`super::RowError`]s and do
/// not stop the import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "오래된 Excel 97-2003(.xls) 형식입니다. Excel에서 'Excel 통합 문서(*.xlsx)'로 다시 저장해 올려 주세요."
    )]
    LegacyXls,
    #[error(
        "엑셀 파일을 읽을 수 없습니다. 손상되지 않은 .xlsx 파일(Excel 통합 문서)인지 확인해 주세요."
    )]
    Unreadable {
        /// The parser's own words, for the log.
        detail: String,
    },
    #[error("통합 문서에 워크시트가 없습니다.")]
    NoSheet,
    #[error("첫 번째 시트가 비어 있습니다. 머리글 행과 학생 행을 넣어 주세요.")]
    EmptySheet,
    #[error("{}", missing_message(missing, found_headers))]
    MissingColumns {
        /// Required fields no header named.
        missing: Vec<Field>,
        /// The header texts of the row taken as the header (or of the first row when no row
        /// looked like one).
        found_headers: Vec<String>,
    },
    #[error(
        "학생 행이 너무 많습니다: {found}행{} (한 번에 최대 {max}행). 파일을 나누어 올려 주세요.",
        if *exact { "" } else { " 이상" }
    )]
    TooManyRows { max: u32, found: u32, exact: bool },
    #[error("파일 내용이 너무 큽니다({what}). 학생 명단만 남겨 다시 저장해 올려 주세요.")]
    TooLarge { what: String },
    #[error("파일을 열 수 없습니다: {0}")]
    Io(#[from] std::io::Error),
}

fn missing_message(missing: &[Field], found: &[String]) -> String {
    let mut m = String::from("필수 열을 찾지 못했습니다: ");
    let labels: Vec<_> = missing.iter().map(|f| f.label()).collect();
    m.push_str(&labels.join(", "));
    let _ = write!(
        m,
        ". 처음 {HEADER_WINDOW}개 행 중 한 행에 머리글이 있어야 합니다. 알아보는 머리글은"
    );
    for (i, f) in missing.iter().enumerate() {
        let sep = if i == 0 { " " } else { "; " };
        let _ = write!(m, "{sep}{}: {}", f.label(), f.examples().join(", "));
        if *f == Field::ParentPhone {
            m.push_str(" (부모·학부모·보호자·parent·guardian이 들어간 머리글)");
        }
    }
    m.push_str(" 입니다. 찾은 머리글: ");
    if found.is_empty() {
        m.push_str("없음");
    } else {
        let shown: Vec<String> = found
            .iter()
            .take(20)
            .map(|h| h.chars().take(40).collect())
            .collect();
        m.push_str(&shown.join(", "));
        if found.len() > 20 {
            m.push_str(", …");
        }
    }
    m.push('.');
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_columns_message_names_expected_and_found() {
        let e = ImportError::MissingColumns {
            missing: vec![Field::ParentPhone],
            found_headers: vec!["번호".into(), "이름".into(), "학교".into()],
        };
        let m = e.to_string();
        assert!(
            m.starts_with("필수 열을 찾지 못했습니다: 부모 전화번호."),
            "{m}"
        );
        assert!(
            m.contains("부모 전화번호: 부모 전화번호, 학부모 연락처, 보호자 전화번호"),
            "{m}"
        );
        assert!(m.ends_with("찾은 머리글: 번호, 이름, 학교."), "{m}");
        let e = ImportError::MissingColumns {
            missing: vec![Field::Name, Field::ParentPhone],
            found_headers: vec![],
        };
        let m = e.to_string();
        assert!(m.contains("이름, 부모 전화번호"), "{m}");
        assert!(m.contains("이름: 이름, 성명, 학생명"), "{m}");
        assert!(m.ends_with("찾은 머리글: 없음."), "{m}");
    }

    #[test]
    fn too_many_rows_says_whether_it_counted_all() {
        let e = ImportError::TooManyRows {
            max: 20_000,
            found: 20_006,
            exact: false,
        };
        assert!(e.to_string().contains("20006행 이상"));
    }
}
