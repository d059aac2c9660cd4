//! The benchmark's SVG plots, drawn with plotters (SVG backend only, no
//! font files: text is left to the SVG viewer).

use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::Path;

/// A line's name and its points.
pub(crate) type Line = (String, Vec<(f64, f64)>);

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Achieved rates (solid, with points) and their bounds (thin) against the
/// in-flight cap, both axes logarithmic.
pub(crate) fn throughput_vs_cap(path: &Path, achieved: &[Line], bounds: &[Line]) -> PlotResult {
    let all = achieved.iter().chain(bounds).flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::MAX, 1.0f64);
    for &(x, y) in all.filter(|(_, y)| y.is_finite() && *y > 0.0) {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if y_min == f64::MAX {
        y_min = 1.0;
    }
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "I/O-bound handler: throughput against the in-flight cap",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (0.8f64..x_max * 1.25).log_scale(),
            (y_min / 1.5..y_max * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("max_in_flight")
        .y_desc("records/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (i, (name, points)) in achieved.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1 > 0.0).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(PointSeries::of_element(
            points,
            4,
            color.filled(),
            &|c, s, st| EmptyElement::at(c) + Circle::new((0, 0), s, st),
        ))?;
    }
    for (i, (name, points)) in bounds.iter().enumerate() {
        let color = COLORS[i % COLORS.len()].mix(0.5);
        let points: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1 > 0.0).collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(1)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Latency distributions as percentile curves: x is the percentile on a
/// "nines" scale (50 %, 90 %, 99 %, 99.9 % evenly spaced), y the latency
/// in milliseconds.
pub(crate) fn latency(path: &Path, title: &str, curves: &[(String, Histogram<u64>)]) -> PlotResult {
    // x = -log10(1 - q): 0.301 at the median, 1 at p90, 2 at p99, 3 at p99.9.
    let nines = |q: f64| -(1.0 - q).max(1e-6).log10();
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut y_max = 0.1f64;
    let mut x_max = 3.0f64;
    for (name, h) in curves {
        if h.is_empty() {
            continue;
        }
        let mut points = Vec::new();
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            if q >= 1.0 {
                break;
            }
            let ms = v.value_iterated_to() as f64 / 1e3;
            points.push((nines(q), ms));
            y_max = y_max.max(ms);
        }
        points.push((nines(1.0 - 1.0 / h.len() as f64), h.max() as f64 / 1e3));
        x_max = x_max.max(points.last().map_or(0.0, |p| p.0));
        y_max = y_max.max(h.max() as f64 / 1e3);
        lines.push((name.clone(), points));
    }
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max.min(6.0), 0f64..y_max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("produce-to-handled latency (ms)")
        .x_labels(8)
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            if p < 99.0 {
                format!("{p:.0}%")
            } else {
                let digits = format!("{p:.3}");
                format!("{}%", digits.trim_end_matches('0').trim_end_matches('.'))
            }
        })
        .draw()?;
    for (i, (name, points)) in lines.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
