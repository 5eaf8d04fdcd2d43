//! [`generate_students_workbook`]: the workbook a spec describes, written row by row while the
//! outcome its import must find is computed beside it.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use rust_xlsxwriter::{Workbook, XlsxError};

use super::spellings::{
    BAD_PHONES, GRADES, Kind, SCHOOLS, TITLES, Value, header_text, name, number, spell,
    write_optional,
};
use super::{Expected, ExpectedInvalid, ExpectedStudent, Generated, InvalidKind, WorkbookSpec};
use crate::excel::import::Field;

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
