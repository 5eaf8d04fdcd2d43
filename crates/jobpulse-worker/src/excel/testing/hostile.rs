//! Workbooks built to cost memory, written part by part (rust_xlsxwriter keeps every cell in
//! memory and refuses some of these shapes): each is a valid .xlsx whose first two columns carry
//! the student header (`이름`, `부모 전화번호`) so that only the memory bounds can refuse it.

use std::fmt::Write as _;
use std::io::{Cursor, Write as _};

use zip::ZipWriter;
use zip::write::SimpleFileOptions;

/// A workbook shape that costs memory out of proportion to its file size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// One cell holding `bytes` bytes of text (the issue's 120 MB cell in a ~0.5 MB file).
    HugeCell { bytes: usize },
    /// One shared string of `chars` characters used by every cell of `rows` × `cols`.
    RepeatedLongString { chars: usize, rows: u32, cols: u32 },
    /// A shared-strings table of `count` distinct strings of `chars` characters, each used by
    /// one cell, 50 a row.
    ManyStrings { count: usize, chars: usize },
    /// A tiny shared-strings table that declares `count` strings (`uniqueCount`).
    DeclaredCount { count: u64 },
    /// `rows` × `cols` number cells.
    ManyCells { rows: u32, cols: u32 },
}

const HEADER: [&str; 2] = ["이름", "부모 전화번호"];

impl Hostile {
    /// The .xlsx bytes.
    pub fn workbook(&self) -> Vec<u8> {
        let mut strings: Vec<String> = HEADER.iter().map(|s| (*s).to_owned()).collect();
        let mut declared = None;
        let mut sheet = String::new();
        sheet.push_str(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>"#,
        );
        let row = |sheet: &mut String, r: u32, cells: &mut dyn Iterator<Item = String>| {
            let _ = write!(sheet, r#"<row r="{r}">"#);
            for c in cells {
                sheet.push_str(&c);
            }
            sheet.push_str("</row>");
        };
        match *self {
            Self::HugeCell { bytes } => {
                strings.push("가".repeat(bytes / 3));
                row(
                    &mut sheet,
                    2,
                    &mut std::iter::once(r#"<c r="A2" t="s"><v>2</v></c>"#.to_owned()),
                );
            }
            Self::RepeatedLongString { chars, rows, cols } => {
                strings.push("x".repeat(chars));
                for r in 2..rows + 2 {
                    row(
                        &mut sheet,
                        r,
                        &mut (0..cols)
                            .map(|c| format!(r#"<c r="{}{r}" t="s"><v>2</v></c>"#, column(c))),
                    );
                }
            }
            Self::ManyStrings { count, chars } => {
                // 50 distinct strings a row, each used by one cell.
                let mut r = 2;
                while strings.len() < count + HEADER.len() {
                    let first = strings.len();
                    let n = (count + HEADER.len() - first).min(50);
                    for c in 0..n {
                        let tag = format!("{r:05}{c:02}");
                        strings.push(format!(
                            "{tag}{}",
                            "x".repeat(chars.saturating_sub(tag.len()))
                        ));
                    }
                    row(
                        &mut sheet,
                        r,
                        &mut (0..n).map(|c| {
                            format!(
                                r#"<c r="{}{r}" t="s"><v>{}</v></c>"#,
                                column(c as u32),
                                first + c
                            )
                        }),
                    );
                    r += 1;
                }
            }
            Self::DeclaredCount { count } => declared = Some(count),
            Self::ManyCells { rows, cols } => {
                for r in 2..rows + 2 {
                    row(
                        &mut sheet,
                        r,
                        &mut (0..cols)
                            .map(|c| format!(r#"<c r="{}{r}"><v>{}</v></c>"#, column(c), r + c)),
                    );
                }
            }
        }
        sheet.push_str("</sheetData></worksheet>");

        let mut shared = String::new();
        let _ = write!(
            shared,
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{0}" uniqueCount="{0}">"#,
            declared.unwrap_or(strings.len() as u64)
        );
        for s in &strings {
            let _ = write!(shared, "<si><t>{s}</t></si>");
        }
        shared.push_str("</sst>");
        zip_parts(&[
            ("[Content_Types].xml", CONTENT_TYPES),
            ("_rels/.rels", ROOT_RELS),
            ("xl/workbook.xml", WORKBOOK),
            ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS),
            ("xl/worksheets/sheet1.xml", &sheet),
            ("xl/sharedStrings.xml", &shared),
        ])
    }
}

/// The column letters of a zero-based column index (`0` → `A`, `26` → `AA`).
pub fn column(mut c: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn zip_parts(parts: &[(&str, &str)]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in parts {
        // Writing to memory cannot fail.
        let _ = zip.start_file(*name, options);
        let _ = zip.write_all(body.as_bytes());
    }
    zip.finish().map(Cursor::into_inner).unwrap_or_default()
}

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>"#;
const ROOT_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
const WORKBOOK: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="학생" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
const WORKBOOK_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_spelled_like_excel() {
        assert_eq!(column(0), "A");
        assert_eq!(column(25), "Z");
        assert_eq!(column(26), "AA");
        assert_eq!(column(701), "ZZ");
        assert_eq!(column(702), "AAA");
    }
}
