//! The sheet as the import sees it: non-blank rows of sparse cells, independent of calamine.
//!
//! Keeping our own cell type lets the header detection and row validation be tested (and fuzzed)
//! on grids built in memory, and keeps calamine's types out of the public API.

use std::collections::BTreeMap;

/// One non-empty cell value. Whitespace-only text never becomes a cell: it is blank.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An error value such as `#N/A` or `#REF!`.
    Error(String),
}

impl Cell {
    /// A text cell, or `None` when the text is blank.
    pub fn text(s: impl Into<String>) -> Option<Cell> {
        let s = s.into();
        if s.trim().is_empty() {
            None
        } else {
            Some(Cell::Text(s))
        }
    }

    /// The value as a user would read it: integral floats without a fraction (`3`, not `3.0`).
    pub fn display(&self) -> String {
        match self {
            Cell::Text(s) => s.trim().to_owned(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
                // Exact: integer-valued and below 2^53.
                format!("{}", *f as i64)
            }
            Cell::Float(f) => f.to_string(),
            Cell::Bool(true) => "TRUE".to_owned(),
            Cell::Bool(false) => "FALSE".to_owned(),
            Cell::Error(e) => e.clone(),
        }
    }
}

/// A non-blank row: its 1-based sheet row number and its cells by 0-based column, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct GridRow {
    pub number: u32,
    pub cells: Vec<(u32, Cell)>,
}

impl GridRow {
    pub fn get(&self, col: u32) -> Option<&Cell> {
        self.cells
            .binary_search_by_key(&col, |(c, _)| *c)
            .ok()
            .map(|i| &self.cells[i].1)
    }
}

/// The non-blank rows of one sheet, in row order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grid {
    rows: Vec<GridRow>,
}

impl Grid {
    /// Builds a grid from dense rows given as `(1-based row number, cells from column 0)`, dropping
    /// blank cells and rows. Rows may come in any order; a repeated row number merges, later
    /// cells winning.
    pub fn from_rows(rows: impl IntoIterator<Item = (u32, Vec<Option<Cell>>)>) -> Grid {
        let mut b = GridBuilder::default();
        for (number, cells) in rows {
            for (col, cell) in cells.into_iter().enumerate() {
                if let (Some(cell), Ok(col)) = (cell, u32::try_from(col)) {
                    b.push(number, col, cell);
                }
            }
        }
        b.finish()
    }

    pub fn rows(&self) -> &[GridRow] {
        &self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of non-blank rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Collects cells in any order into a [`Grid`].
#[derive(Debug, Default)]
pub(crate) struct GridBuilder {
    rows: BTreeMap<u32, BTreeMap<u32, Cell>>,
    cells: u64,
}

impl GridBuilder {
    /// Adds a cell at 1-based `row`, 0-based `col`, unless it is blank text.
    pub(crate) fn push(&mut self, row: u32, col: u32, cell: Cell) {
        if let Cell::Text(s) = &cell
            && s.trim().is_empty()
        {
            return;
        }
        if self
            .rows
            .entry(row)
            .or_default()
            .insert(col, cell)
            .is_none()
        {
            self.cells += 1;
        }
    }

    pub(crate) fn row_count(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn cell_count(&self) -> u64 {
        self.cells
    }

    pub(crate) fn finish(self) -> Grid {
        Grid {
            rows: self
                .rows
                .into_iter()
                .map(|(number, cells)| GridRow {
                    number,
                    cells: cells.into_iter().collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_cells_and_rows_vanish_and_rows_sort() {
        let g = Grid::from_rows([
            (5, vec![None, Cell::text("b")]),
            (2, vec![Cell::text("  "), None]),
            (1, vec![Some(Cell::Int(7))]),
        ]);
        assert_eq!(g.len(), 2);
        assert_eq!(g.rows()[0].number, 1);
        assert_eq!(g.rows()[1].number, 5);
        assert_eq!(g.rows()[1].get(1), Some(&Cell::Text("b".into())));
        assert_eq!(g.rows()[1].get(0), None);
    }

    #[test]
    fn display_reads_like_a_user_would() {
        assert_eq!(Cell::Float(3.0).display(), "3");
        assert_eq!(Cell::Float(2.5).display(), "2.5");
        assert_eq!(Cell::Float(f64::NAN).display(), "NaN");
        assert_eq!(Cell::Int(-4).display(), "-4");
        assert_eq!(Cell::Text("  홍길동 ".into()).display(), "홍길동");
        assert_eq!(Cell::Error("#N/A".into()).display(), "#N/A");
    }
}
