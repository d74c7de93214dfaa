//! The latency plot: every latency distribution of a run as one SVG, in the classic HdrHistogram
//! "percentile spectrum" shape (x: percentile on a log-of-nines axis, so p50, p90, p99, p99.9,
//! p99.99 are evenly spaced; y: latency on a log axis). Tails are what a performance SLO is about,
//! and this axis is the one that shows them.
//!
//! plotters is built with only its SVG backend and no font stack: text is emitted as SVG `<text>`
//! and laid out by the viewer.

use crate::report::Curve;
use plotters::prelude::*;

/// Renders the curves as an SVG document. An empty set still yields a valid (empty) plot.
///
/// # Errors
/// A drawing error from plotters, as text.
pub fn latency_svg(title: &str, curves: &[Curve]) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut max_ns = 10f64;
        let mut min_ns = f64::MAX;
        for c in curves {
            for &(_, v) in &c.points {
                max_ns = max_ns.max(v as f64);
                min_ns = min_ns.min((v as f64).max(1.0));
            }
        }
        if min_ns == f64::MAX {
            min_ns = 1.0;
        }
        let y_lo = (min_ns / 2.0).max(1.0);
        let y_hi = max_ns * 2.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..5f64, (y_lo..y_hi).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ns)")
            .x_labels(6)
            .x_label_formatter(&|x| nines_label(*x))
            .y_label_formatter(&|y| format_ns(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, c) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = c
                .points
                .iter()
                .filter(|(q, _)| *q < 1.0)
                .map(|&(q, v)| (-(1.0 - q).log10(), (v as f64).max(y_lo)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(c.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        if !curves.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// "0" -> "0%", "1" -> "90%", "2" -> "99%", "3" -> "99.9%", ...
fn nines_label(x: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-x));
    if x < 0.5 {
        "0%".into()
    } else if x.fract().abs() < 1e-9 {
        let digits = (x as usize).saturating_sub(2);
        format!("{q:.digits$}%")
    } else {
        format!("{q:.3}%")
    }
}

fn format_ns(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1}s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}us", v / 1e3)
    } else {
        format!("{v:.0}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_contains_every_series_label() {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for v in 1..1000u64 {
            h.record(v * 10).unwrap();
        }
        let curves = vec![Curve::of("steady", &h), Curve::of("during swaps", &h)];
        let svg = latency_svg("test", &curves).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("steady"));
        assert!(svg.contains("during swaps"));
        assert!(svg.contains("99.9%"));
    }

    #[test]
    fn empty_plot_is_still_an_svg() {
        let svg = latency_svg("nothing", &[]).unwrap();
        assert!(svg.contains("</svg>"));
    }

    #[test]
    fn nines_axis_labels() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(4.0), "99.99%");
    }
}
