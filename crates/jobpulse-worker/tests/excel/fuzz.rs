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
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

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

    /// Phone parsing never panics and is idempotent on what it accepts.
    #[test]
    fn phone_parse_is_total_and_idempotent(s in ".{0,40}") {
        if let Ok(p) = Phone::parse(&s) {
            prop_assert_eq!(Phone::parse(p.as_str()), Ok(p.clone()));
            prop_assert!(p.as_str().len() == 13 || p.as_str().len() == 12);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

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
