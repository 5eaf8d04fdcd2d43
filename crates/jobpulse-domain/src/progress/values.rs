//! The bounded values of a progress state: [`Percent`], [`Text`] (bounded, no control
//! characters) and a worker's [`StepProgress`].

use serde::{Deserialize, Serialize};

use super::ProgressError;

/// Overall or step percent, 0..=100.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct Percent(u8);

impl Percent {
    pub const ZERO: Percent = Percent(0);
    pub const FULL: Percent = Percent(100);

    pub fn new(v: u8) -> Result<Self, ProgressError> {
        if v <= 100 {
            Ok(Self(v))
        } else {
            Err(ProgressError::Percent)
        }
    }

    /// Rounds down a fraction in `[0, 1]`; out-of-range and NaN inputs are clamped.
    pub fn from_fraction(f: f64) -> Self {
        if f.is_nan() {
            return Self::ZERO;
        }
        // Truncation is intended: 99.9 % is not yet 100 %.
        Self((f.clamp(0.0, 1.0) * 100.0).floor() as u8)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Percent {
    type Error = ProgressError;
    fn try_from(v: u8) -> Result<Self, ProgressError> {
        Self::new(v)
    }
}

impl From<Percent> for u8 {
    fn from(p: Percent) -> u8 {
        p.0
    }
}

/// A bounded, printable text: no control characters other than newline and tab.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    /// Longest error reason or message kept, in characters.
    pub const MAX_MESSAGE: usize = 2000;
    /// Longest step display name, in characters.
    pub const MAX_DISPLAY: usize = 64;

    /// Refuses a text that is empty, too long or contains control characters.
    pub fn parse(s: &str, field: &'static str, max: usize) -> Result<Self, ProgressError> {
        let n = s.chars().count();
        let clean = s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t');
        if n == 0 || n > max || !clean {
            return Err(ProgressError::Text { field, max });
        }
        Ok(Self(s.to_owned()))
    }

    /// For texts we produce ourselves (a tool's stderr, an error chain): control characters become
    /// spaces and the text is cut at `max` characters with an ellipsis, never refused.
    pub fn lossy(s: &str, max: usize) -> Self {
        let mut out: String = s
            .trim()
            .chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    ' '
                } else {
                    c
                }
            })
            .take(max)
            .collect();
        if s.trim().chars().count() > max {
            out.pop();
            out.push('…');
        }
        if out.is_empty() {
            out.push('-');
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a worker is inside its pipeline: `[step index/total] name`, with the step's own percent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepProgress {
    pub index: u8,
    pub total: u8,
    /// Machine name, e.g. `transcoding`.
    pub name: String,
    /// Display name, e.g. `인코딩`.
    pub display: Text,
    pub percent: Percent,
}

impl StepProgress {
    pub fn new(
        index: u8,
        total: u8,
        name: &str,
        display: &str,
        percent: Percent,
    ) -> Result<Self, ProgressError> {
        let step = Self {
            index,
            total,
            name: name.to_owned(),
            display: Text::parse(display, "step display name", Text::MAX_DISPLAY)?,
            percent,
        };
        step.validate()?;
        Ok(step)
    }

    pub(super) fn validate(&self) -> Result<(), ProgressError> {
        if self.index == 0 || self.index > self.total || self.total > 32 {
            return Err(ProgressError::StepIndex);
        }
        let name_ok = (1..=32).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(ProgressError::StepName);
        }
        // `display` is a `Text`, but one that came through serde skipped `Text::parse`.
        Text::parse(
            self.display.as_str(),
            "step display name",
            Text::MAX_DISPLAY,
        )?;
        Ok(())
    }
}
