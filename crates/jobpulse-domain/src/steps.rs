//! The named steps of each pipeline (docs/contract.md §4) and how step progress maps to the overall
//! percent a browser draws.
//!
//! The front end draws UPLOADED as 10 % and PROCESSING at `max(1, min(99, progress))`, so the video
//! plan starts PROCESSING at 10 % (the bar never moves back when encoding begins) and stops at
//! 99 % until READY. Step weights reflect where the time goes (transcoding dominates).

use crate::{Percent, StepProgress};

/// One step: its machine name, its display name, and its share of the whole pipeline's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDef {
    pub name: &'static str,
    pub display: &'static str,
    pub weight: u16,
}

/// An ordered list of steps and the overall percent range they span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPlan {
    pub steps: &'static [StepDef],
    /// Overall percent at the start of step 1.
    pub floor: u8,
    /// Highest overall percent before the terminal state.
    pub ceil: u8,
}

const fn step(name: &'static str, display: &'static str, weight: u16) -> StepDef {
    StepDef {
        name,
        display,
        weight,
    }
}

/// The video pipeline: `[i/7]` presigning … uploading.
pub const VIDEO: StepPlan = StepPlan {
    steps: &[
        step("presigning", "준비", 1),
        step("downloading", "다운로드", 4),
        step("probing", "분석", 2),
        step("transcoding", "인코딩", 80),
        step("validating", "검증", 3),
        step("thumbnail", "썸네일", 2),
        step("uploading", "업로드", 8),
    ],
    floor: 10,
    ceil: 99,
};

/// The excel import: `[i/4]` downloading … done.
pub const EXCEL_IMPORT: StepPlan = StepPlan {
    steps: &[
        step("downloading", "다운로드", 5),
        step("parsing", "파싱", 10),
        step("enrolling", "등록", 80),
        step("done", "완료", 5),
    ],
    floor: 0,
    ceil: 99,
};

/// A generic export job: `[i/3]` loading … uploading.
pub const EXPORT: StepPlan = StepPlan {
    steps: &[
        step("loading", "불러오기", 20),
        step("writing", "작성", 60),
        step("uploading", "업로드", 20),
    ],
    floor: 0,
    ceil: 99,
};

impl StepPlan {
    pub fn total(&self) -> u8 {
        // Plans are consts with a handful of steps.
        self.steps.len() as u8
    }

    /// 1-based index of the step called `name`.
    pub fn index_of(&self, name: &str) -> Option<u8> {
        self.steps
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as u8 + 1)
    }

    /// Overall percent at `fraction` (0..=1) through step `index` (1-based). Monotonic in
    /// `(index, fraction)`, within `floor..=ceil`.
    pub fn overall(&self, index: u8, fraction: f64) -> Percent {
        let total: u32 = self.steps.iter().map(|s| u32::from(s.weight)).sum();
        let i = usize::from(index.clamp(1, self.total())) - 1;
        let before: u32 = self.steps[..i].iter().map(|s| u32::from(s.weight)).sum();
        let f = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let done = (f64::from(before) + f * f64::from(self.steps[i].weight)) / f64::from(total);
        let span = f64::from(self.ceil - self.floor);
        let p = f64::from(self.floor) + (done * span).floor();
        Percent::new((p as u8).min(self.ceil)).unwrap_or(Percent::ZERO)
    }

    /// The step detail at `fraction` through step `index`.
    pub fn step(&self, index: u8, fraction: f64) -> StepProgress {
        let i = index.clamp(1, self.total());
        let def = self.steps[usize::from(i) - 1];
        StepProgress {
            index: i,
            total: self.total(),
            name: def.name.to_owned(),
            display: crate::Text::lossy(def.display, crate::Text::MAX_DISPLAY),
            percent: Percent::from_fraction(fraction),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_match_the_contract() {
        let names: Vec<_> = VIDEO.steps.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "presigning",
                "downloading",
                "probing",
                "transcoding",
                "validating",
                "thumbnail",
                "uploading"
            ]
        );
        assert_eq!(VIDEO.total(), 7);
        assert_eq!(EXCEL_IMPORT.index_of("enrolling"), Some(3));
        assert_eq!(EXCEL_IMPORT.step(3, 0.6).display.as_str(), "등록");
    }

    #[test]
    fn overall_is_monotonic_and_bounded() {
        for plan in [VIDEO, EXCEL_IMPORT, EXPORT] {
            let mut last = Percent::ZERO;
            for i in 1..=plan.total() {
                for k in 0..=20 {
                    let p = plan.overall(i, f64::from(k) / 20.0);
                    assert!(p >= last, "{i} {k}");
                    assert!(p.get() >= plan.floor && p.get() <= plan.ceil);
                    last = p;
                }
            }
        }
        assert_eq!(VIDEO.overall(1, 0.0).get(), 10, "PROCESSING starts at 10 %");
        assert_eq!(VIDEO.overall(7, 1.0).get(), 99, "100 % is READY's alone");
    }
}
