//! What the generated rows are made of: distinct names and mobile numbers, header texts in each
//! [`HeaderStyle`], and the ways people type a number or leave a cell.

use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rust_xlsxwriter::XlsxError;

use super::{HeaderStyle, InvalidKind};
use crate::excel::import::Field;

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
pub(super) const SCHOOLS: [&str; 8] = [
    "서울중학교",
    "한빛초등학교",
    "대원고등학교",
    "새솔중",
    "미래초",
    "Seoul International School",
    "청담고",
    "푸른중학교",
];
pub(super) const GRADES: [&str; 6] = ["1", "2", "3", "중2", "고1", "초등 5학년"];
pub(super) const TITLES: [&str; 4] = [
    "2024학년도 1학기 수강생 명단",
    "작성: 행정실 (2024-03-02)",
    "※ 부모 전화번호는 꼭 적어 주세요",
    "반: 중등 수학 A",
];
pub(super) const BAD_PHONES: [&str; 6] = [
    "02-123-4567",
    "010-123-456",
    "없음",
    "1234",
    "070-1234-5678",
    "010-1234-56789",
];

pub(super) fn header_text(field: Field, style: HeaderStyle, rng: &mut StdRng) -> &'static str {
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
pub(super) fn name(i: u32) -> String {
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
pub(super) fn number(space: u32, k: u32) -> (String, String) {
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
pub(super) enum Value {
    Text(String),
    Number(f64),
}

/// One of the ways people type a number.
pub(super) fn spell(canonical: &str, digits: &str, numeric: bool, rng: &mut StdRng) -> Value {
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
pub(super) enum Kind {
    Valid,
    Duplicate,
    Invalid(InvalidKind),
    Blank,
}

pub(super) fn write_optional(
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
