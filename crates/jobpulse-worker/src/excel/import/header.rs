//! Header recognition: which column of a student sheet holds which field.
//!
//! Academies label columns in many ways (`이름`, `학생 이름`, `성명`, `Name`; `부모님 연락처`,
//! `보호자 전화번호`, `Parent phone` …). A header is compared after removing case, spaces and
//! punctuation, and, if that alone does not match, also without a bracketed remark such as
//! `(필수)` or `(010-0000-0000)`.

use std::fmt;

use serde::Serialize;

/// A field of a student row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Name,
    Phone,
    ParentPhone,
    School,
    Grade,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::Name,
        Field::Phone,
        Field::ParentPhone,
        Field::School,
        Field::Grade,
    ];

    /// Columns a sheet must have.
    pub const REQUIRED: [Field; 2] = [Field::Name, Field::ParentPhone];

    /// The label the front end and error messages use.
    pub fn label(self) -> &'static str {
        match self {
            Field::Name => "이름",
            Field::Phone => "학생 전화번호",
            Field::ParentPhone => "부모 전화번호",
            Field::School => "학교",
            Field::Grade => "학년",
        }
    }

    /// Header spellings shown to a user whose sheet lacks this column (a sample of what is
    /// recognised, not the whole rule set).
    pub fn examples(self) -> &'static [&'static str] {
        match self {
            Field::Name => &[
                "이름",
                "성명",
                "학생명",
                "학생 이름",
                "Name",
                "Student name",
            ],
            Field::Phone => &[
                "학생 전화번호",
                "학생 연락처",
                "학생 휴대폰",
                "연락처",
                "Phone",
                "Student phone",
            ],
            Field::ParentPhone => &[
                "부모 전화번호",
                "학부모 연락처",
                "보호자 전화번호",
                "Parent phone",
                "Guardian phone",
            ],
            Field::School => &["학교", "학교명", "School"],
            Field::Grade => &["학년", "Grade", "Year"],
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

const PARENT_WORDS: [&str; 15] = [
    "부모",
    "학부모",
    "보호자",
    "어머니",
    "아버지",
    "엄마",
    "아빠",
    "어머님",
    "아버님",
    "parent",
    "guardian",
    "mother",
    "father",
    "mom",
    "dad",
];

/// A header that names a parent but is about something other than their phone (`보호자 이름`,
/// `부모 관계`, `parent email`) is not the parent phone column.
const NOT_PHONE_WORDS: [&str; 13] = [
    "이름",
    "성명",
    "성함",
    "name",
    "관계",
    "relation",
    "이메일",
    "email",
    "mail",
    "주소",
    "address",
    "직업",
    "job",
];

const PHONE_WORDS: [&str; 22] = [
    "전화",
    "전화번호",
    "연락처",
    "휴대폰",
    "휴대폰번호",
    "휴대전화",
    "휴대전화번호",
    "핸드폰",
    "핸드폰번호",
    "폰번호",
    "hp",
    "phone",
    "phonenumber",
    "phoneno",
    "mobile",
    "mobilephone",
    "mobilenumber",
    "cellphone",
    "cell",
    "contact",
    "tel",
    "telephone",
];

const STUDENT_WORDS: [&str; 6] = ["학생", "학생본인", "본인", "원생", "student", "students"];

const NAMES: [&str; 14] = [
    "이름",
    "성명",
    "학생명",
    "학생이름",
    "학생성명",
    "학생",
    "원생명",
    "원생이름",
    "name",
    "studentname",
    "studentsname",
    "fullname",
    "성함",
    "학생성함",
];

const SCHOOLS: [&str; 8] = [
    "학교",
    "학교명",
    "학교이름",
    "재학학교",
    "소속학교",
    "출신학교",
    "school",
    "schoolname",
];

const GRADES: [&str; 5] = ["학년", "grade", "year", "schoolyear", "학년반"];

/// Lower-case letters and digits only (Hangul counts as letters).
pub fn normalize(header: &str) -> String {
    header
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The header without bracketed remarks: `이름(필수)` → `이름`.
fn without_remarks(header: &str) -> String {
    let mut depth = 0usize;
    let mut out = String::with_capacity(header.len());
    for c in header.chars() {
        match c {
            '(' | '[' | '{' | '<' | '（' | '［' | '【' | '「' => depth += 1,
            ')' | ']' | '}' | '>' | '）' | '］' | '】' | '」' => {
                depth = depth.saturating_sub(1)
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Which field a header names, if any.
pub fn recognize(header: &str) -> Option<Field> {
    let full = normalize(header);
    if full.is_empty() {
        return None;
    }
    recognize_normalized(&full).or_else(|| {
        let short = normalize(&without_remarks(header));
        if short.is_empty() || short == full {
            None
        } else {
            recognize_normalized(&short)
        }
    })
}

fn recognize_normalized(h: &str) -> Option<Field> {
    if PARENT_WORDS.iter().any(|w| h.contains(w)) {
        return if NOT_PHONE_WORDS.iter().any(|w| h.contains(w)) {
            None
        } else {
            Some(Field::ParentPhone)
        };
    }
    if NAMES.contains(&h) {
        return Some(Field::Name);
    }
    if is_phone(h) {
        return Some(Field::Phone);
    }
    if SCHOOLS.contains(&h) {
        return Some(Field::School);
    }
    if GRADES.contains(&h) {
        return Some(Field::Grade);
    }
    None
}

/// A phone word, optionally after a student word: `연락처`, `학생 휴대폰`, `student phone`.
fn is_phone(h: &str) -> bool {
    let rest = STUDENT_WORDS
        .iter()
        .filter_map(|w| h.strip_prefix(w))
        .find(|rest| PHONE_WORDS.contains(rest));
    rest.is_some() || PHONE_WORDS.contains(&h)
}

/// Where each field sits in the header row, and what was not used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderMap {
    /// The sheet's 1-based row number of the header.
    pub row: u32,
    /// 0-based column of each recognised field (the first such column when several match).
    pub columns: Vec<(Field, u32)>,
    /// Every non-empty header text of the row, in column order.
    pub headers: Vec<String>,
    /// Headers that name no field, or a field already taken by an earlier column.
    pub ignored: Vec<String>,
}

impl HeaderMap {
    /// Maps a row of `(column, text)` header cells.
    pub fn from_cells<'a>(row: u32, cells: impl IntoIterator<Item = (u32, &'a str)>) -> Self {
        let mut map = HeaderMap {
            row,
            ..HeaderMap::default()
        };
        for (col, text) in cells {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            map.headers.push(text.to_owned());
            match recognize(text) {
                Some(field) if map.column(field).is_none() => map.columns.push((field, col)),
                _ => map.ignored.push(text.to_owned()),
            }
        }
        map
    }

    pub fn column(&self, field: Field) -> Option<u32> {
        self.columns
            .iter()
            .find(|(f, _)| *f == field)
            .map(|&(_, c)| c)
    }

    /// Required fields this row lacks.
    pub fn missing(&self) -> Vec<Field> {
        Field::REQUIRED
            .into_iter()
            .filter(|f| self.column(*f).is_none())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_table() {
        let table: &[(&str, Option<Field>)] = &[
            ("이름", Some(Field::Name)),
            (" 이 름 ", Some(Field::Name)),
            ("성명", Some(Field::Name)),
            ("학생명", Some(Field::Name)),
            ("학생 이름", Some(Field::Name)),
            ("이름(필수)", Some(Field::Name)),
            ("*이름", Some(Field::Name)),
            ("Name", Some(Field::Name)),
            ("STUDENT NAME", Some(Field::Name)),
            ("Student_Name", Some(Field::Name)),
            ("학생 전화번호", Some(Field::Phone)),
            ("학생연락처", Some(Field::Phone)),
            ("학생 휴대폰", Some(Field::Phone)),
            ("학생 핸드폰", Some(Field::Phone)),
            ("연락처", Some(Field::Phone)),
            ("전화번호", Some(Field::Phone)),
            ("휴대폰 번호", Some(Field::Phone)),
            ("Phone", Some(Field::Phone)),
            ("mobile", Some(Field::Phone)),
            ("Student Phone", Some(Field::Phone)),
            ("student's phone", Some(Field::Phone)),
            ("H.P.", Some(Field::Phone)),
            ("연락처 (010-0000-0000)", Some(Field::Phone)),
            ("부모 전화번호", Some(Field::ParentPhone)),
            ("학부모 연락처", Some(Field::ParentPhone)),
            ("보호자 전화번호", Some(Field::ParentPhone)),
            ("부모님 휴대폰", Some(Field::ParentPhone)),
            ("학부모", Some(Field::ParentPhone)),
            ("보호자", Some(Field::ParentPhone)),
            ("어머니 연락처", Some(Field::ParentPhone)),
            ("Parent Phone", Some(Field::ParentPhone)),
            ("parent's mobile", Some(Field::ParentPhone)),
            ("Guardian", Some(Field::ParentPhone)),
            ("연락처(학부모)", Some(Field::ParentPhone)),
            ("보호자 이름", None),
            ("학부모 성함", None),
            ("부모 관계", None),
            ("Parent email", None),
            ("학교", Some(Field::School)),
            ("학교명", Some(Field::School)),
            ("School", Some(Field::School)),
            ("School Name", Some(Field::School)),
            ("학년", Some(Field::Grade)),
            ("Grade", Some(Field::Grade)),
            ("year", Some(Field::Grade)),
            ("번호", None),
            ("No.", None),
            ("비고", None),
            ("이메일", None),
            ("", None),
            ("---", None),
            ("2024학년도 1학기 수강생 명단", None),
        ];
        for (h, want) in table {
            assert_eq!(recognize(h), *want, "{h:?}");
        }
    }

    #[test]
    fn first_column_of_a_field_wins() {
        let m = HeaderMap::from_cells(
            3,
            [
                (0, "번호"),
                (1, "이름"),
                (2, "성명"),
                (4, "학부모 연락처"),
                (5, ""),
            ],
        );
        assert_eq!(m.row, 3);
        assert_eq!(m.column(Field::Name), Some(1));
        assert_eq!(m.column(Field::ParentPhone), Some(4));
        assert_eq!(m.ignored, ["번호", "성명"]);
        assert_eq!(m.headers, ["번호", "이름", "성명", "학부모 연락처"]);
        assert!(m.missing().is_empty());
        let m = HeaderMap::from_cells(1, [(0, "학교")]);
        assert_eq!(m.missing(), [Field::Name, Field::ParentPhone]);
    }
}
