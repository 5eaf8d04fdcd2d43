//! Figures: latency summaries and Prometheus text.

use std::time::Duration;

/// Percentiles of a set of durations. An empty sample has none: reading a percentile of it
/// panics ("nothing was measured"), so a bound checked on it cannot pass vacuously; it still
/// prints (`n=0`) in figures.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    stats: Option<Stats>,
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        if samples.is_empty() {
            return Summary { n: 0, stats: None };
        }
        // Microseconds, 3 significant digits: the same HDR histogram as the bench's figures.
        let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits is valid");
        for d in samples {
            let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            h.record(us)
                .expect("an auto-resizing histogram takes any value");
        }
        let us = Duration::from_micros;
        Summary {
            n: samples.len(),
            stats: Some(Stats {
                mean: Duration::from_secs_f64(h.mean() / 1e6),
                p50: us(h.value_at_quantile(0.50)),
                p99: us(h.value_at_quantile(0.99)),
                max: us(h.max()),
            }),
        }
    }

    fn stats(&self) -> Stats {
        self.stats
            .expect("a percentile of an empty sample: nothing was measured")
    }

    pub fn mean(&self) -> Duration {
        self.stats().mean
    }

    pub fn p50(&self) -> Duration {
        self.stats().p50
    }

    pub fn p99(&self) -> Duration {
        self.stats().p99
    }

    pub fn max(&self) -> Duration {
        self.stats().max
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match self.stats {
            None => write!(f, "n=0 (no samples)"),
            Some(s) => write!(
                f,
                "n={} mean={:.2}ms p50={:.2}ms p99={:.2}ms max={:.2}ms",
                self.n,
                ms(s.mean),
                ms(s.p50),
                ms(s.p99),
                ms(s.max)
            ),
        }
    }
}

/// Sum of the samples of metric `name` whose labels contain every `label="value"` given.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, r)) => (m, r),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|lab| rest.contains(lab)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Welch's t statistic of two samples (seconds), and its degrees of freedom.
pub fn welch(a: &[Duration], b: &[Duration]) -> (f64, f64) {
    let stats = |v: &[Duration]| {
        let n = v.len() as f64;
        let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|d| (d.as_secs_f64() - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0).max(1.0);
        (n, mean, var)
    };
    let (na, ma, va) = stats(a);
    let (nb, mb, vb) = stats(b);
    let se2 = va / na + vb / nb;
    let t = (ma - mb) / se2.sqrt().max(f64::MIN_POSITIVE);
    let df = se2.powi(2)
        / ((va / na).powi(2) / (na - 1.0).max(1.0) + (vb / nb).powi(2) / (nb - 1.0).max(1.0))
            .max(f64::MIN_POSITIVE);
    (t, df)
}

/// Mann–Whitney U test of two samples, normal approximation: the z score (|z| > 3 means the
/// two distributions differ with high confidence) and the probability that a random sample of
/// `a` is slower than one of `b` (0.5 = indistinguishable).
pub fn mann_whitney(a: &[Duration], b: &[Duration]) -> (f64, f64) {
    let mut all: Vec<(Duration, bool)> = a
        .iter()
        .map(|d| (*d, true))
        .chain(b.iter().map(|d| (*d, false)))
        .collect();
    all.sort_by_key(|x| x.0);
    // Average ranks over ties.
    let mut rank_sum_a = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_a += rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let mu = n1 * n2 / 2.0;
    let sigma = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    (
        (u - mu) / sigma.max(f64::MIN_POSITIVE),
        u / (n1 * n2).max(1.0),
    )
}
