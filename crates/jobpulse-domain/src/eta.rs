//! Remaining-time estimation from measured speed.
//!
//! Workers feed `(elapsed seconds, fraction done)` samples; the estimator keeps an exponentially
//! weighted rate and turns it into seconds left. The raw estimate is then blended with the
//! previous estimate counted down by the elapsed time, so the number a user sees ticks down
//! smoothly instead of jumping with every noisy sample, and it may grow only by a bounded step.
//! It is never negative and never produced before a rate has been measured.

/// Smoothed ETA from progress samples.
#[derive(Debug, Clone)]
pub struct EtaEstimator {
    /// EWMA weight of the newest rate sample.
    alpha: f64,
    /// How much of the gap between countdown and raw estimate one sample closes.
    blend: f64,
    last: Option<(f64, f64)>,
    rate: Option<f64>,
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
            alpha: 0.3,
            blend: 0.3,
            last: None,
            rate: None,
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
        let Some((t0, f0)) = self.last else {
            self.last = Some((t_secs, f));
            return None;
        };
        let dt = t_secs - t0;
        if dt <= 0.0 {
            return self.current();
        }
        let inst = (f - f0).max(0.0) / dt;
        self.rate = Some(match self.rate {
            None => inst,
            Some(r) => r + self.alpha * (inst - r),
        });
        self.last = Some((t_secs, f.max(f0)));
        let remaining_work = 1.0 - f.max(f0);
        let raw = match self.rate {
            Some(r) if r > 1e-9 => remaining_work / r,
            _ => return self.current(),
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
    fn no_estimate_before_a_rate() {
        let mut e = EtaEstimator::new();
        assert_eq!(e.observe(0.0, 0.0), None);
        assert_eq!(e.observe(1.0, 0.0), None, "no progress yet, no rate");
        assert_eq!(e.observe(0.5, 0.3), None, "time going back is ignored");
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
