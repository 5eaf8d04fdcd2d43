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

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use rust_xlsxwriter::{Workbook, XlsxError};

use super::import::Field;

pub mod hostile;

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

const SURNAMES: [&str; 20] = [
    "김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권", "황",
    "안", "송", "류", "홍",
];
const GIVEN_1: [&str; 30] = [
    "민", "서", "지", "하", "도", "예", "시", "주", "유", "수", "준", "현", "은", "채", "다", "건",
    "우", "연", "태", "승", "나", "소", "재", "가", "아", "윤", "세", "라", "동", "혜",
];
const GIVEN_2: [&str; 30] = [
    "준", "윤", "우", "원", "호", "린", "아", "은", "진", "빈", "율", "현", "민", "서", "희", "영",
    "훈", "찬", "솔", "결", "온", "담", "별", "람", "혁", "경", "름", "슬", "혜", "후",
];
const SCHOOLS: [&str; 8] = [
    "서울중학교",
    "한빛초등학교",
    "대원고등학교",
    "새솔중",
    "미래초",
    "Seoul International School",
    "청담고",
    "푸른중학교",
];
const GRADES: [&str; 6] = ["1", "2", "3", "중2", "고1", "초등 5학년"];
const TITLES: [&str; 4] = [
    "2024학년도 1학기 수강생 명단",
    "작성: 행정실 (2024-03-02)",
    "※ 부모 전화번호는 꼭 적어 주세요",
    "반: 중등 수학 A",
];
const BAD_PHONES: [&str; 6] = [
    "02-123-4567",
    "010-123-456",
    "없음",
    "1234",
    "070-1234-5678",
    "010-1234-56789",
];

fn header_text(field: Field, style: HeaderStyle, rng: &mut StdRng) -> &'static str {
    let variants: &[&str] = match field {
        Field::Name => &["이름", "성명", "학생명", "학생 이름", "Name", "이름(필수)"],
        Field::Phone => &[
            "학생 전화번호",
            "학생연락처",
            "학생 휴대폰",
            "학생 핸드폰",
            "연락처",
            "Phone",
        ],
        Field::ParentPhone => &[
            "부모 전화번호",
            "학부모 연락처",
            "보호자 전화번호",
            "부모님 휴대폰",
            "Parent phone",
            "학부모 연락처(필수)",
        ],
        Field::School => &["학교", "학교명", "School"],
        Field::Grade => &["학년", "Grade", "학년 "],
    };
    match style {
        HeaderStyle::Canonical => variants[0],
        HeaderStyle::English => match field {
            Field::Name => "Name",
            Field::Phone => "Student phone",
            Field::ParentPhone => "Parent phone",
            Field::School => "School",
            Field::Grade => "Grade",
        },
        HeaderStyle::Random => variants.choose(rng).copied().unwrap_or(variants[0]),
    }
}

/// The `i`-th distinct name.
fn name(i: u32) -> String {
    let i = i as usize;
    let mut n = format!(
        "{}{}{}",
        SURNAMES[i % 20],
        GIVEN_1[(i / 20) % 30],
        GIVEN_2[(i / 600) % 30]
    );
    if i >= 18_000 {
        n.push_str(&(i / 18_000).to_string());
    }
    n
}

/// A distinct mobile number per `k` (`space` keeps parent, student and junk numbers apart):
/// its canonical form and its digits. Every 20th is an old 10-digit 011 number.
fn number(space: u32, k: u32) -> (String, String) {
    if k % 20 == 7 {
        let rest = format!("{:07}", 2_000_000 + space * 1_000_000 + k);
        let digits = format!("011{rest}");
        (format!("011-{}-{}", &rest[..3], &rest[3..]), digits)
    } else {
        let rest = format!("{:08}", 20_000_000 + space * 10_000_000 + k);
        let digits = format!("010{rest}");
        (format!("010-{}-{}", &rest[..4], &rest[4..]), digits)
    }
}

/// A cell value to write.
enum Value {
    Text(String),
    Number(f64),
}

/// One of the ways people type a number.
fn spell(canonical: &str, digits: &str, numeric: bool, rng: &mut StdRng) -> Value {
    let national = &digits[1..];
    match rng.random_range(0..if numeric { 7 } else { 6 }) {
        0 | 1 => Value::Text(canonical.to_owned()),
        2 => Value::Text(digits.to_owned()),
        3 => Value::Text(canonical.replace('-', " ")),
        4 => Value::Text(format!("+82 {}", &canonical[1..])),
        5 => Value::Text(canonical.replace('-', ".")),
        _ => Value::Number(national.parse::<f64>().unwrap_or(0.0)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    Duplicate,
    Invalid(InvalidKind),
    Blank,
}

/// Writes the workbook a spec describes and computes what its import must find.
pub fn generate_students_workbook(spec: &WorkbookSpec) -> Result<Generated, XlsxError> {
    let mut rng = StdRng::seed_from_u64(spec.seed);

    let mut columns: Vec<Option<Field>> = Field::ALL.iter().copied().map(Some).collect();
    if spec.extra_columns {
        columns.insert(0, None);
        columns.push(None);
    }
    if spec.shuffle_columns {
        columns.shuffle(&mut rng);
    }
    let mut extra_names = ["번호", "비고"].into_iter();
    let headers: Vec<String> = columns
        .iter()
        .map(|c| match c {
            Some(f) => header_text(*f, spec.header_style, &mut rng).to_owned(),
            None => extra_names.next().unwrap_or("메모").to_owned(),
        })
        .collect();
    let col_of = |f: Field| {
        columns
            .iter()
            .position(|c| *c == Some(f))
            .map(|p| p as u16)
            .unwrap_or(0)
    };

    // Data row kinds: the first is a valid student (so repeats and siblings have someone before
    // them); the rest shuffled; no blank row last.
    let mut kinds = Vec::new();
    let push = |kinds: &mut Vec<Kind>, k: Kind, n: u32| kinds.extend((0..n).map(|_| k));
    push(&mut kinds, Kind::Valid, spec.valid.saturating_sub(1));
    push(&mut kinds, Kind::Duplicate, spec.duplicates);
    push(
        &mut kinds,
        Kind::Invalid(InvalidKind::BadParentPhone),
        spec.bad_parent_phone,
    );
    push(
        &mut kinds,
        Kind::Invalid(InvalidKind::BadStudentPhone),
        spec.bad_student_phone,
    );
    push(
        &mut kinds,
        Kind::Invalid(InvalidKind::MissingName),
        spec.missing_name,
    );
    push(
        &mut kinds,
        Kind::Invalid(InvalidKind::MissingParentPhone),
        spec.missing_parent_phone,
    );
    push(&mut kinds, Kind::Blank, spec.blank);
    kinds.shuffle(&mut rng);
    if spec.valid > 0 {
        kinds.insert(0, Kind::Valid);
    }
    if kinds.last() == Some(&Kind::Blank)
        && let Some(i) = kinds.iter().rposition(|k| *k != Kind::Blank)
    {
        let n = kinds.len();
        kinds.swap(i, n - 1);
    }
    // Siblings and pre-existing students among the valid rows after the first.
    let mut valid_ix: Vec<u32> = (1..spec.valid).collect();
    valid_ix.shuffle(&mut rng);
    let siblings: std::collections::HashSet<u32> = valid_ix
        .iter()
        .take(spec.siblings as usize)
        .copied()
        .collect();
    valid_ix.shuffle(&mut rng);
    let pre_existing: std::collections::HashSet<u32> = valid_ix
        .iter()
        .take(spec.pre_existing as usize)
        .copied()
        .collect();

    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let mut row: u32 = 0; // 1-based number of the last row written
    for t in 0..spec.title_rows.min(4) {
        row += 1;
        sheet.write_string(row - 1, 0, TITLES[t as usize])?;
    }
    if spec.title_rows > 0 {
        row += 1; // a blank spacer row, as title blocks usually have
    }
    row += 1;
    let header_row = row;
    for (c, h) in headers.iter().enumerate() {
        sheet.write_string(row - 1, c as u16, h.as_str())?;
    }

    let mut expected = Expected {
        header_row,
        headers: headers.iter().map(|h| h.trim().to_owned()).collect(),
        data_rows: spec.data_rows(),
        blank_rows: spec.blank,
        students: Vec::new(),
        duplicates: Vec::new(),
        invalid: Vec::new(),
        pre_existing: Vec::new(),
    };
    let mut originals: Vec<ExpectedStudent> = Vec::new();
    let (mut valid_n, mut junk_n, mut student_n) = (0u32, 0u32, 0u32);
    for kind in kinds {
        row += 1;
        let r0 = row - 1;
        let mut put = |field: Field, v: Value| -> Result<(), XlsxError> {
            match v {
                Value::Text(s) => sheet.write_string(r0, col_of(field), s)?,
                Value::Number(n) => sheet.write_number(r0, col_of(field), n)?,
            };
            Ok(())
        };
        let school = SCHOOLS.choose(&mut rng).filter(|_| rng.random_bool(0.8));
        let grade = GRADES.choose(&mut rng).filter(|_| rng.random_bool(0.8));
        match kind {
            Kind::Blank => {
                // Half the blank rows are cells holding only spaces, as left by a deleted entry.
                if rng.random_bool(0.5) {
                    put(Field::Name, Value::Text("   ".to_owned()))?;
                    put(Field::School, Value::Text(" ".to_owned()))?;
                }
            }
            Kind::Valid => {
                let i = valid_n;
                valid_n += 1;
                let (parent, parent_digits) = if siblings.contains(&i) {
                    let o = originals.choose(&mut rng).unwrap_or(&originals[0]);
                    (o.parent_phone.clone(), o.parent_phone.replace('-', ""))
                } else {
                    number(0, i)
                };
                let phone = rng.random_bool(0.7).then(|| {
                    student_n += 1;
                    number(3, student_n)
                });
                let n = name(i);
                put(Field::Name, Value::Text(n.clone()))?;
                put(
                    Field::ParentPhone,
                    spell(&parent, &parent_digits, spec.numeric_phones, &mut rng),
                )?;
                if let Some((p, d)) = &phone {
                    put(Field::Phone, spell(p, d, spec.numeric_phones, &mut rng))?;
                }
                write_optional(&mut put, school, grade, spec.numeric_phones)?;
                let s = ExpectedStudent {
                    row,
                    name: n,
                    phone: phone.map(|(p, _)| p),
                    parent_phone: parent,
                    school: school.map(|s| (*s).to_owned()),
                    grade: grade.map(|g| (*g).to_owned()),
                };
                if pre_existing.contains(&i) {
                    expected.pre_existing.push(s.clone());
                }
                originals.push(s.clone());
                expected.students.push(s);
            }
            Kind::Duplicate => {
                let o = originals.choose(&mut rng).unwrap_or(&originals[0]).clone();
                let digits = o.parent_phone.replace('-', "");
                put(Field::Name, Value::Text(format!("  {} ", o.name)))?;
                put(
                    Field::ParentPhone,
                    spell(&o.parent_phone, &digits, spec.numeric_phones, &mut rng),
                )?;
                write_optional(&mut put, school, grade, spec.numeric_phones)?;
                expected.duplicates.push((row, o.row));
                expected.students.push(ExpectedStudent {
                    row,
                    name: o.name,
                    phone: None,
                    parent_phone: o.parent_phone,
                    school: school.map(|s| (*s).to_owned()),
                    grade: grade.map(|g| (*g).to_owned()),
                });
            }
            Kind::Invalid(k) => {
                junk_n += 1;
                let n = name(spec.valid + junk_n);
                let (parent, _) = number(6, junk_n);
                let shown = match k {
                    InvalidKind::MissingName => {
                        put(Field::ParentPhone, Value::Text(parent))?;
                        String::new()
                    }
                    InvalidKind::MissingParentPhone => {
                        put(Field::Name, Value::Text(n.clone()))?;
                        n
                    }
                    InvalidKind::BadParentPhone => {
                        let bad = BAD_PHONES.choose(&mut rng).copied().unwrap_or("1234");
                        put(Field::Name, Value::Text(n.clone()))?;
                        put(Field::ParentPhone, Value::Text(bad.to_owned()))?;
                        n
                    }
                    InvalidKind::BadStudentPhone => {
                        let bad = BAD_PHONES.choose(&mut rng).copied().unwrap_or("1234");
                        put(Field::Name, Value::Text(n.clone()))?;
                        put(Field::ParentPhone, Value::Text(parent))?;
                        put(Field::Phone, Value::Text(bad.to_owned()))?;
                        n
                    }
                };
                write_optional(&mut put, school, grade, spec.numeric_phones)?;
                expected.invalid.push(ExpectedInvalid {
                    row,
                    kind: k,
                    name: shown,
                });
            }
        }
        if spec.extra_columns && kind != Kind::Blank {
            // `번호` and `비고` hold junk the import must ignore.
            if let Some(c) = columns.iter().position(Option::is_none) {
                sheet.write_number(r0, c as u16, f64::from(row))?;
            }
            if let Some(c) = columns.iter().rposition(Option::is_none) {
                sheet.write_string(r0, c as u16, "#메모")?;
            }
        }
    }
    Ok(Generated {
        bytes: book.save_to_buffer()?,
        expected,
    })
}

fn write_optional(
    put: &mut impl FnMut(Field, Value) -> Result<(), XlsxError>,
    school: Option<&&str>,
    grade: Option<&&str>,
    numeric: bool,
) -> Result<(), XlsxError> {
    if let Some(s) = school {
        put(Field::School, Value::Text((*s).to_owned()))?;
    }
    if let Some(g) = grade {
        // A bare grade digit is often a number cell.
        match g.parse::<f64>() {
            Ok(n) if numeric => put(Field::Grade, Value::Number(n))?,
            _ => put(Field::Grade, Value::Text((*g).to_owned()))?,
        }
    }
    Ok(())
}
