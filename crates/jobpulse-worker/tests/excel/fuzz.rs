//! Hostile input: whatever the bytes or cells, an import answers and never panics.

use super::*;

fn any_cell() -> impl Strategy<Value = Option<Cell>> {
    prop_oneof![
        3 => Just(None),
        2 => prop::sample::select(vec![
            "이름", "성명", "부모 전화번호", "학부모", "연락처", "학교", "학년", "Name", "parent",
            "010-1234-5678", "01012345678", "+82 10 1234 5678", "02-123-4567", " ", "",
        ])
        .prop_map(Cell::text),
        2 => ".{0,60}".prop_map(Cell::text),
        1 => any::<i64>().prop_map(|i| Some(Cell::Int(i))),
        1 => any::<f64>().prop_map(|f| Some(Cell::Float(f))),
        1 => (1_000_000_000i64..1_099_999_999).prop_map(|i| Some(Cell::Float(i as f64))),
        1 => any::<bool>().prop_map(|b| Some(Cell::Bool(b))),
        1 => Just(Some(Cell::Error("#N/A".into()))),
    ]
}

fn any_grid() -> impl Strategy<Value = Vec<(u32, Vec<Option<Cell>>)>> {
    prop::collection::vec(
        (
            prop_oneof![1u32..40, Just(u32::MAX), 1u32..=u32::MAX],
            prop::collection::vec(any_cell(), 0..8),
        ),
        0..40,
    )
}

proptest! {
    #![proptest_config(jobpulse_testkit::proptest_config(512))]

    /// Header detection and validation never panic, and every data row gets exactly one outcome
    /// carrying its own row number.
    #[test]
    fn random_grids_never_panic(rows in any_grid()) {
        let grid = Grid::from_rows(rows);
        if let Ok(parsed) = import::parse_grid(&grid, &Limits::default()) {
            let header_row = parsed.header.row;
            let numbers: Vec<u32> = parsed.rows().map(|r| match r {
                Ok(s) => s.row,
                Err(e) => e.row,
            }).collect();
            prop_assert_eq!(numbers.len(), parsed.len());
            prop_assert!(numbers.iter().all(|n| *n > header_row));
            prop_assert!(numbers.windows(2).all(|w| w[0] < w[1]));
            for r in parsed.rows() {
                match r {
                    Ok(s) => {
                        prop_assert!(!s.name.is_empty() && s.name.chars().count() <= 50);
                        prop_assert!(Phone::parse(s.parent_phone.as_str()).as_ref() == Ok(&s.parent_phone));
                    }
                    Err(e) => prop_assert!(!e.problems.is_empty() && !e.error.is_empty()),
                }
            }
            let _ = parsed.blank_rows();
        }
    }

    /// Arbitrary bytes are refused, never a panic.
    #[test]
    fn random_bytes_are_an_error(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(import(&bytes).is_err());
    }

    /// Phone parsing never panics on any text, and is idempotent on what it accepts.
    #[test]
    fn phone_parse_is_total_and_idempotent(s in ".{0,40}") {
        if let Ok(p) = Phone::parse(&s) {
            prop_assert_eq!(Phone::parse(p.as_str()), Ok(p.clone()));
            prop_assert!(p.as_str().len() == 13 || p.as_str().len() == 12);
        }
    }

    /// Every way a sheet writes a mobile number parses to its one canonical form, which parses
    /// to itself. (Random text almost never is a phone number, so the property above alone would
    /// check idempotence on next to nothing.)
    #[test]
    fn typed_phone_numbers_parse_to_their_canonical_form((typed, canonical) in typed_phone()) {
        let parsed = Phone::parse(&typed);
        prop_assert_eq!(parsed.as_ref().map(Phone::as_str), Ok(canonical.as_str()), "typed {:?}", typed);
        let p = parsed.expect("checked above");
        prop_assert_eq!(Phone::parse(p.as_str()), Ok(p.clone()));
        prop_assert_eq!(p.digits().len(), if canonical.len() == 13 { 11 } else { 10 });
    }
}

/// A digit as a keyboard or a Korean IME types it (ASCII or full-width).
fn typed_digit(d: char, full_width: bool) -> char {
    if full_width {
        char::from_u32('０' as u32 + d.to_digit(10).expect("a digit")).expect("full-width digit")
    } else {
        d
    }
}

/// A Korean mobile number and one of the ways people type it: national, `+82` (with or
/// without the trunk 0 in parentheses), `82…`, a number cell that lost its leading 0; any
/// separators (including word processors' dashes), full-width digits, parentheses around the
/// prefix, surrounding whitespace. Yields `(typed, canonical)`.
fn typed_phone() -> impl Strategy<Value = (String, String)> {
    let separator = prop::sample::select(vec![
        "", "", "-", " ", ".", "/", "  ", "\u{2010}", "\u{2013}", "\u{2212}", "\u{ff0d}",
        "\u{3000}",
    ]);
    (
        prop::sample::select(vec!["010", "011", "016", "017", "018", "019"]),
        any::<bool>(),
        prop::collection::vec(0u8..10, 8),
        0u8..5,
        (separator.clone(), separator),
        prop::collection::vec(any::<bool>(), 11),
        any::<bool>(),
        prop::sample::select(vec!["", " ", "\t", "\u{a0}"]),
    )
        .prop_map(
            |(prefix, short, digits, form, (sep1, sep2), wide, parens, pad)| {
                // 010 numbers have 8 digits after the prefix; the old prefixes 7 or 8.
                let n = if prefix != "010" && short { 7 } else { 8 };
                let body: String = digits[..n].iter().map(|d| char::from(b'0' + d)).collect();
                let (mid, last) = body.split_at(n - 4);
                let canonical = format!("{prefix}-{mid}-{last}");
                let lead = match form {
                    0 | 1 => prefix.to_owned(),
                    2 => format!("+82 {}", &prefix[1..]),
                    3 => format!("+82 (0){}", &prefix[1..]),
                    _ => prefix[1..].to_owned(),
                };
                let lead = if parens && form < 2 {
                    format!("({lead})")
                } else {
                    lead
                };
                let mut i = 0;
                let mut out = String::from(pad);
                for part in [lead.as_str(), sep1, mid, sep2, last] {
                    for c in part.chars() {
                        out.push(if c.is_ascii_digit() {
                            i += 1;
                            typed_digit(c, wide[(i - 1) % wide.len()])
                        } else {
                            c
                        });
                    }
                }
                out.push_str(pad);
                (out, canonical)
            },
        )
}

proptest! {
    #![proptest_config(jobpulse_testkit::proptest_config(64))]

    /// A valid workbook with bytes flipped or cut: an error or an import, never a panic.
    #[test]
    fn damaged_workbooks_never_panic(
        seed in 0u64..1000,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let spec = WorkbookSpec { seed, numeric_phones: true, title_rows: 1, ..WorkbookSpec::valid_rows(20) };
        let mut bytes = generate_students_workbook(&spec).expect("generates").bytes;
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = import(&bytes);
    }

    /// Well-zipped workbooks whose XML parts are damaged: this reaches calamine's XML readers
    /// (flipped bytes mostly stop at the zip checksum).
    #[test]
    fn damaged_xml_never_panics(
        seed in 0u64..1000,
        part in prop::sample::select(vec![
            "xl/worksheets/sheet1.xml", "xl/sharedStrings.xml", "xl/workbook.xml",
            "xl/_rels/workbook.xml.rels", "[Content_Types].xml", "xl/styles.xml",
        ]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![
            any::<u8>().prop_map(|b| vec![b]),
            prop::sample::select(vec![
                "<", ">", "\"", "/", "0", "9", "-", "</row>", "</c>", "<v>", "</sheetData>",
                r#"<row r="4294967295">"#, r#"<row r="0">"#, r#"<row r="99999999999">"#,
                r#"<c r="XFD1048577" t="s"><v>999999</v></c>"#, r#"<c r="A1" t="s"><v>-1</v></c>"#,
                r#"<c r="B2" t="e"><v>#N/A</v></c>"#, r#"<c r="C3"><v>NaN</v></c>"#,
                r#"<c r="ZZZZZZ9"><v>1e999</v></c>"#, r#"<c t="inlineStr"><is><t>x</t></is></c>"#,
                r#"<dimension ref="A1:XFD1048576"/>"#, r#"<si><t>"#, "&#0;", "&#xD800;", "&bogus;",
            ]).prop_map(|s| s.as_bytes().to_vec()),
        ]), 1..8),
        delete in prop::option::of((any::<prop::sample::Index>(), 0usize..64)),
    ) {
        let spec = WorkbookSpec { seed, numeric_phones: true, title_rows: 1, ..WorkbookSpec::valid_rows(12) };
        let bytes = generate_students_workbook(&spec).expect("generates").bytes;
        let mut entries = unzip(&bytes);
        if let Some((_, data)) = entries.iter_mut().find(|(n, _)| n == part) {
            for (at, insert) in edits {
                let i = at.index(data.len() + 1);
                data.splice(i..i, insert);
            }
            if let Some((at, n)) = delete {
                let i = at.index(data.len() + 1);
                let end = (i + n).min(data.len());
                data.drain(i..end);
            }
        }
        let _ = import(&rezip(&entries));
    }

    /// Random grids written to real .xlsx files parse without panicking.
    #[test]
    fn random_sheets_never_panic(rows in any_grid()) {
        let mut book = Workbook::new();
        let sheet = book.add_worksheet();
        for (r, cells) in &rows {
            // Rows near Excel's last one take rust_xlsxwriter ~0.4 s each to write in debug builds
            // (reading them back takes ~1 ms); that
            // case has its own test (a_stray_cell_far_away_costs_nothing).
            let r = if *r > 5_000 { 5_000 } else { r - 1 };
            for (c, cell) in cells.iter().enumerate() {
                let c = c as u16;
                let _ = match cell {
                    Some(Cell::Text(s)) => sheet.write_string(r, c, s.as_str()).map(|_| ()),
                    Some(Cell::Int(i)) => sheet.write_number(r, c, *i as f64).map(|_| ()),
                    Some(Cell::Float(f)) => sheet.write_number(r, c, *f).map(|_| ()),
                    Some(Cell::Bool(b)) => sheet.write_boolean(r, c, *b).map(|_| ()),
                    Some(Cell::Error(_)) => sheet.write_formula(r, c, "=1/0").map(|_| ()),
                    None => Ok(()),
                };
            }
        }
        let bytes = book.save_to_buffer().expect("saves");
        let _ = import(&bytes);
    }
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).expect("an entry");
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut data).expect("reads");
            (f.name().expect("a utf-8 name").into_owned(), data)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write as _;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), opts).expect("starts");
        w.write_all(data).expect("writes");
    }
    w.finish().expect("finishes").into_inner()
}

#[test]
fn a_rezipped_workbook_still_imports() {
    // The damaged-XML fuzz is only meaningful if an undamaged rezip imports.
    let g = generate_students_workbook(&WorkbookSpec::valid_rows(12)).expect("generates");
    assert_matches(&must_import(&rezip(&unzip(&g.bytes))), &g.expected);
}

/// Issue 15 finding 8: one cell of 120 MB (under the old 128 MiB unpacked limit) took a worker
/// to 797 MB. A part that unpacks beyond `max_part_bytes` is refused from the zip directory,
/// before the parser holds any of it; a long cell that fits is refused by `max_cell_chars`.
#[test]
fn a_huge_cell_is_refused_before_it_is_parsed() {
    let g = generate_students_workbook(&WorkbookSpec::valid_rows(3)).expect("generates");
    let mut entries = unzip(&g.bytes);
    let sst = entries
        .iter_mut()
        .find(|(n, _)| n == "xl/sharedStrings.xml")
        .expect("a shared-strings part");
    let huge = "가".repeat(12 * 1024 * 1024); // 36 MiB of UTF-8 in one string
    let text = String::from_utf8(sst.1.clone()).expect("utf-8");
    let at = text.find("<si>").expect("a first string");
    sst.1 = format!("{}<si><t>{huge}</t></si>{}", &text[..at], &text[at..]).into_bytes();
    let bytes = rezip(&entries);
    let started = std::time::Instant::now();
    match import(&bytes) {
        Err(ImportError::TooLarge { what }) => {
            assert!(what.contains("sharedStrings"), "{what}");
            eprintln!("refused in {:?}: {what}", started.elapsed());
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_long_cell_is_refused_with_its_row() {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "이름").expect("writes");
    sheet.write_string(0, 1, "부모 전화번호").expect("writes");
    sheet.write_string(1, 0, "홍길동").expect("writes");
    sheet.write_string(1, 1, "010-1234-5678").expect("writes");
    sheet.write_string(2, 0, "가".repeat(5000)).expect("writes");
    sheet.write_string(2, 1, "010-1234-5679").expect("writes");
    let bytes = book.save_to_buffer().expect("saves");
    match import(&bytes) {
        Err(ImportError::TooLarge { what }) => {
            assert!(what.contains("3행") && what.contains("5000자"), "{what}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}
