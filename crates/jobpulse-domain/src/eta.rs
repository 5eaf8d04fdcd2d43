//! Remaining-time estimation from measured speed.
//!
//! Workers feed `(elapsed seconds, fraction done)` samples. The speed is the average since the
//! first sample — not a per-sample rate: progress arrives in bursts (ffmpeg reports every half
//! second and encodes frames in batches, an import writes rows in chunks), so per-sample rates
//! jump around, and `jobpulse-bench --only eta` showed the average since the start to be the
//! better predictor of what is left on real transcodes and imports (a window over only the
//! recent past followed changes of pace, but missed more often than it helped; see
//! docs/benchmarks.md, "Honest ETAs"). No estimate is given before the speed has been measured
//! over [`MIN_MEASURED_SECS`]: a figure taken from the first half second of a start-up is
//! wrong by a multiple, and a user is better served by none.
//!
//! The raw estimate is then blended with the previous estimate counted down by the elapsed
//! time, so the number a user sees ticks down smoothly instead of jumping with every sample,
//! and it may grow only by a bounded step. It is never negative.

/// How long the speed is measured before the first estimate, seconds.
pub const MIN_MEASURED_SECS: f64 = 2.0;

/// Smoothed ETA from progress samples.
#[derive(Debug, Clone)]
pub struct EtaEstimator {
    /// How much of the gap between countdown and raw estimate one sample closes.
    blend: f64,
    /// The first sample `(t, fraction)`.
    first: Option<(f64, f64)>,
    /// The latest sample; both coordinates non-decreasing.
    last: Option<(f64, f64)>,
    eta: Option<f64>,
}

impl Default for EtaEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl EtaEstimator {
    pub fn new() -> Self {
        Self {
            blend: 0.3,
            first: None,
            last: None,
            eta: None,
        }
    }

    /// Records a sample and returns the current estimate in whole seconds, if there is one.
    /// Samples that go back in time are ignored; a fraction that goes back counts as no progress.
    pub fn observe(&mut self, t_secs: f64, fraction: f64) -> Option<u32> {
        if !t_secs.is_finite() || !fraction.is_finite() {
            return self.current();
        }
        let f = fraction.clamp(0.0, 1.0);
        let (Some((t_first, f_first)), Some((t0, f0))) = (self.first, self.last) else {
            self.first = Some((t_secs, f));
            self.last = Some((t_secs, f));
            return None;
        };
        let dt = t_secs - t0;
        if dt <= 0.0 {
            return self.current();
        }
        let f = f.max(f0);
        self.last = Some((t_secs, f));
        let remaining_work = 1.0 - f;
        let (measured, done) = (t_secs - t_first, f - f_first);
        let raw = if measured >= MIN_MEASURED_SECS && done > 1e-9 {
            remaining_work * measured / done
        } else {
            match self.eta {
                Some(prev) => (prev - dt).max(0.0),
                None => return None,
            }
        };
        let next = match self.eta {
            None => raw,
            Some(prev) => {
                let countdown = (prev - dt).max(0.0);
                let blended = countdown + self.blend * (raw - countdown);
                // Growth is capped: at most +20 % (and at least +2 s) over the last figure shown.
                blended.min(prev * 1.2 + 2.0)
            }
        };
        let next = if remaining_work <= 0.0 {
            0.0
        } else {
            next.max(0.0)
        };
        self.eta = Some(next);
        self.current()
    }

    /// The last estimate, rounded to whole seconds.
    pub fn current(&self) -> Option<u32> {
        self.eta.map(|e| e.round().min(f64::from(u32::MAX)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_speed_converges_and_counts_down() {
        // 100 seconds of work at a steady pace, sampled every second.
        let mut e = EtaEstimator::new();
        let mut shown = Vec::new();
        for t in 0..=100i32 {
            if let Some(s) = e.observe(f64::from(t), f64::from(t) / 100.0) {
                shown.push((t, s));
            }
        }
        for w in shown.windows(2) {
            assert!(w[1].1 <= w[0].1, "never goes up at a steady pace: {w:?}");
        }
        let (t, s) = shown[10];
        assert!(
            (i64::from(s) - i64::from(100 - t)).abs() <= 2,
            "at {t}s shows {s}"
        );
        assert_eq!(shown.last().map(|x| x.1), Some(0));
    }

    #[test]
    fn a_slow_start_gives_no_wild_first_figure() {
        // 20 s of work after a 0.5 s start-up that shows nothing, sampled every 0.5 s: no
        // estimate before 2 s were measured; the first one carries the start-up (a quarter of
        // what was measured) but no more, and half-way the figure is right.
        let mut e = EtaEstimator::new();
        let mut shown = Vec::new();
        for i in 0..=40 {
            let t = f64::from(i) * 0.5;
            let f = ((t - 0.5) / 20.0).max(0.0);
            if let Some(s) = e.observe(t, f) {
                shown.push((t, f64::from(s)));
            }
        }
        let (t, s) = shown[0];
        assert!(t >= MIN_MEASURED_SECS, "first figure at {t} s");
        let truth = 20.5 - t;
        assert!(
            (s - truth).abs() <= truth * 0.4,
            "{s} s shown at {t} s, {truth} s left"
        );
        let (t, s) = shown
            .iter()
            .copied()
            .find(|(t, _)| *t >= 10.5)
            .expect("half-way");
        assert!((s - (20.5 - t)).abs() <= 1.0, "{s} s shown at {t} s");
    }

    #[test]
    fn no_estimate_before_a_rate() {
        let mut e = EtaEstimator::new();
        assert_eq!(e.observe(0.0, 0.0), None);
        assert_eq!(e.observe(1.0, 0.0), None, "no progress yet, no rate");
        assert_eq!(e.observe(0.5, 0.3), None, "time going back is ignored");
        assert_eq!(e.observe(1.5, 0.3), None, "measured for less than 2 s");
        assert_eq!(e.observe(2.0, 0.4), Some(3), "0.4 in 2 s: 3 s for the rest");
    }

    proptest! {
        #![proptest_config(jobpulse_testkit::proptest_config(256))]

        #[test]
        fn never_negative_and_never_jumps(
            steps in proptest::collection::vec((0.01f64..5.0, 0.0f64..0.2), 1..200)
        ) {
            let mut e = EtaEstimator::new();
            let (mut t, mut f) = (0.0, 0.0);
            let mut prev: Option<u32> = None;
            e.observe(t, f);
            for (dt, df) in steps {
                t += dt;
                f = (f + df).min(1.0);
                if let Some(s) = e.observe(t, f) {
                    if let Some(p) = prev {
                        prop_assert!(f64::from(s) <= f64::from(p) * 1.2 + 3.0, "{p} -> {s}");
                    }
                    prev = Some(s);
                }
            }
        }
    }
}
