//! `jobpulse-bench --only eta`: how honest the remaining time users see is.
//!
//! Clips of different kinds (a static slide recording, high motion, long, short, with and
//! without audio, and one whose motion starts half-way) go through the real video pipeline (one
//! `VideoWorker` on SQLite + the in-process store, as `jobpulse up` runs it, see
//! [`crate::pipeline`]); the read model's change feed gives every state users were shown. At
//! 10/25/50/75/90 % of the transcode (the first state of step 4 showing at least that step
//! percent and a remaining time) the shown `encoding_remaining_seconds` is compared with the
//! time the transcode actually still took (until step 5 appeared). The error is relative:
//! `max(0, |shown − actual| − 0.5 s) / actual` — the field is whole seconds, so up to 0.5 s is
//! rounding, not estimation. Medians and p90 per point over every clip and round.
//!
//! The baseline, computed from the same shown states: the naive linear extrapolation
//! `elapsed × (100 − p) / p` of the step's percent `p` (what a client could compute itself).
//!
//! The excel import (`excel`) is measured the same way on its enrolling step.

mod excel;

use std::time::Duration;

use anyhow::Context;
use jobpulse_media::Toolchain;
use jobpulse_media::testing::{ClipSpec, generate_clip};

use crate::pipeline::{Embedded, Piped, median};

/// The points of the step (percent) where the shown remaining time is checked.
pub(crate) const POINTS: [u8; 5] = [10, 25, 50, 75, 90];

/// One check: at `point` % of a step, what was shown and what happened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check {
    pub(crate) point: u8,
    /// The shown remaining seconds.
    pub(crate) shown: f64,
    /// The naive linear extrapolation from the same state.
    pub(crate) naive: f64,
    /// The seconds the step really still took.
    pub(crate) actual: f64,
}

/// Relative error beyond whole-second rounding.
pub(crate) fn error(predicted: f64, actual: f64) -> f64 {
    ((predicted - actual).abs() - 0.5).max(0.0) / actual.max(0.5)
}

/// The checks of one run from its timeline: `(since start, step index, step percent,
/// remaining)`, the step measured and when the next step began.
pub(crate) fn checks(samples: &[(Duration, u8, u8, Option<u32>)], step: u8) -> Vec<Check> {
    let in_step: Vec<_> = samples.iter().filter(|s| s.1 == step).collect();
    let Some(start) = in_step.first().map(|s| s.0) else {
        return Vec::new();
    };
    let Some(end) = samples.iter().find(|s| s.1 > step).map(|s| s.0) else {
        return Vec::new();
    };
    POINTS
        .iter()
        .filter_map(|&point| {
            let (t, _, pct, shown) = in_step
                .iter()
                .find(|s| s.2 >= point && s.2 < 100 && s.3.is_some())?;
            let elapsed = t.saturating_sub(start).as_secs_f64();
            let p = f64::from(*pct);
            Some(Check {
                point,
                shown: f64::from((*shown)?),
                naive: elapsed * (100.0 - p) / p,
                actual: end.saturating_sub(*t).as_secs_f64(),
            })
        })
        .collect()
}

fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64) * 0.9).ceil() as usize;
    v[i.saturating_sub(1).min(v.len() - 1)]
}

/// Prints the per-point table of `runs` (name, checks).
#[allow(clippy::print_stdout)] // The report is this command's output.
pub(crate) fn report(what: &str, runs: &[(String, Vec<Check>)]) {
    println!("\n### {what}: error of the shown remaining time\n");
    println!(
        "| point | checks | median shown | p90 shown | median naive | p90 naive | median abs s \
         | p90 abs s | naive / shown (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for point in POINTS {
        let at: Vec<&Check> = runs
            .iter()
            .flat_map(|(_, c)| c.iter())
            .filter(|c| c.point == point)
            .collect();
        let shown: Vec<f64> = at.iter().map(|c| error(c.shown, c.actual)).collect();
        let naive: Vec<f64> = at.iter().map(|c| error(c.naive, c.actual)).collect();
        let abs: Vec<f64> = at.iter().map(|c| (c.shown - c.actual).abs()).collect();
        let (ms, mn) = (median(shown.clone()), median(naive.clone()));
        println!(
            "| {point} % | {} | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.2} | {:.2} | {:.2}× |",
            at.len(),
            ms * 100.0,
            p90(shown) * 100.0,
            mn * 100.0,
            p90(naive) * 100.0,
            median(abs.clone()),
            p90(abs),
            if ms > 0.0 { mn / ms } else { f64::INFINITY },
        );
    }
    println!("\nper run (point: shown / actual s):\n");
    for (name, c) in runs {
        let cells: Vec<String> = c
            .iter()
            .map(|c| format!("{} %: {:.0}/{:.1}", c.point, c.shown, c.actual))
            .collect();
        println!("- {name}: {}", cells.join(" · "));
    }
}

/// The clip kinds; `scale` stretches the long ones.
fn kinds(scale: f64) -> Vec<(&'static str, ClipSpec)> {
    vec![
        (
            "static slides + audio",
            ClipSpec::new(300.0 * scale, 1280, 720).still().with_audio(),
        ),
        (
            "high motion + audio",
            ClipSpec::new(20.0 * scale, 1280, 720)
                .noisy_from(0.0)
                .with_audio(),
        ),
        ("long, silent", ClipSpec::new(120.0 * scale, 1280, 720)),
        ("short + audio", ClipSpec::new(8.0, 1280, 720).with_audio()),
        (
            "motion from half-way, silent",
            ClipSpec::new(40.0 * scale, 1280, 720).noisy_from(20.0 * scale),
        ),
    ]
}

fn samples(p: &Piped) -> Vec<(Duration, u8, u8, Option<u32>)> {
    p.timeline
        .iter()
        .filter_map(|(t, step, rem)| step.as_ref().map(|s| (*t, s.index, s.percent.get(), *rem)))
        .collect()
}

/// Runs the scenario and prints its tables.
#[allow(clippy::print_stdout)]
pub async fn run(rounds: usize, scale: f64, import_rows: u32) -> anyhow::Result<()> {
    anyhow::ensure!(rounds >= 1, "--eta-rounds must be at least 1");
    anyhow::ensure!(
        scale > 0.0 && scale <= 10.0,
        "--eta-scale must be in (0, 10]"
    );
    let tools = Toolchain::detect().context("this scenario needs ffmpeg and ffprobe")?;
    tools.verify().await.context("checking ffmpeg")?;
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    println!("\n## honest ETAs\n");
    let env = Embedded::start(&tools, dir.path()).await?;
    let mut runs = Vec::new();
    let mut n = 0;
    for (name, spec) in kinds(scale) {
        let clip = dir
            .path()
            .join(format!("{}.mp4", name.replace([' ', ',', '+'], "_")));
        generate_clip(&tools, &clip, &spec)
            .await
            .with_context(|| format!("generating the {name} clip"))?;
        for round in 1..=rounds {
            n += 1;
            let budget = Duration::from_secs_f64(spec.seconds * 10.0 + 300.0);
            let piped = env.job(&clip, n, budget).await?;
            let c = checks(&samples(&piped), 4);
            println!(
                "- {name} ({:.0} s of video), round {round}: upload→READY {:.1} s, {} checks",
                spec.seconds,
                piped.total.as_secs_f64(),
                c.len()
            );
            runs.push((format!("{name} #{round}"), c));
        }
        let _ = tokio::fs::remove_file(&clip).await;
    }
    report("video transcode (step 4)", &runs);
    println!(
        "\ngoal: median error ≤ 20 % from the 25 % point on. Errors are relative to the time \
         the step really still took, beyond the ±0.5 s of whole-second rounding."
    );
    if import_rows > 0 {
        excel::run(&env, import_rows, rounds).await?;
    }
    env.stop().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_compare_the_shown_time_with_what_was_left() {
        let s = |ms: u64, step: u8, pct: u8, rem: Option<u32>| {
            (Duration::from_millis(ms), step, pct, rem)
        };
        // Step 4 from 1 s to 11 s at a steady pace; the estimate is right from 25 % on.
        let samples = vec![
            s(0, 3, 0, None),
            s(1_000, 4, 0, None),
            s(2_000, 4, 10, None),
            s(2_100, 4, 12, Some(12)),
            s(3_500, 4, 25, Some(8)),
            s(6_000, 4, 50, Some(5)),
            s(8_500, 4, 75, Some(3)),
            s(10_000, 4, 90, Some(1)),
            s(11_000, 5, 0, None),
        ];
        let c = checks(&samples, 4);
        let points: Vec<u8> = c.iter().map(|c| c.point).collect();
        assert_eq!(points, [10, 25, 50, 75, 90]);
        assert_eq!((c[0].shown, c[0].actual), (12.0, 8.9));
        assert!((c[1].naive - 7.5).abs() < 1e-9, "{:?}", c[1]);
        assert_eq!(error(c[2].shown, c[2].actual), 0.0);
        assert!((error(12.0, 8.9) - 2.6 / 8.9).abs() < 1e-9);
        assert!(checks(&samples[..8], 4).is_empty(), "no end, no check");
    }
}
