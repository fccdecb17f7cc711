//! `bench --report FILE.html`: one self-contained page (no script, no external resource) with the
//! summary, the latency-by-percentile curve and the responses-per-second timeline, drawn as inline
//! SVG by hand: two line charts do not need a plotting crate.

use std::fmt::Write as _;

use super::summary::Summary;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 20.0;
const RIGHT: f64 = 20.0;

/// The page for one run. `curve` is (percentile, µs) from `Latency::curve`.
pub fn render(title: &str, summary: &Summary, curve: &[(f64, u64)]) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}pre{{background:#f4f4f4;padding:1em}}\
         svg{{display:block;margin:1em 0}}</style>\n</head>\n<body>\n<h1>{}</h1>\n<pre>{}</pre>\n",
        escape(title),
        escape(title),
        escape(&summary.to_text(title))
    );
    // Percentiles on a log scale of 1/(1-p), as HdrHistogram plots them: the tail gets the room.
    let points: Vec<(f64, f64)> = curve
        .iter()
        .filter(|(p, _)| *p < 100.0)
        .map(|&(p, us)| ((1.0 / (1.0 - p / 100.0)).log10(), us as f64 / 1000.0))
        .collect();
    let ticks: Vec<(f64, String)> = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
        .iter()
        .map(|p: &f64| ((1.0 / (1.0 - p / 100.0)).log10(), format!("{p}%")))
        .collect();
    page.push_str("<h2>Latency by percentile</h2>\n");
    chart(&mut page, "latency", &points, &ticks, "ms");
    let timeline: Vec<(f64, f64)> = summary
        .timeline
        .iter()
        .enumerate()
        .map(|(s, &n)| (s as f64 + 0.5, n as f64))
        .collect();
    let last = summary.timeline.len().max(1);
    let step = (last / 10).max(1);
    let ticks: Vec<(f64, String)> = (0..=last)
        .step_by(step)
        .map(|s| (s as f64, format!("{s}s")))
        .collect();
    page.push_str("<h2>Responses per second</h2>\n");
    chart(&mut page, "throughput", &timeline, &ticks, "responses/s");
    page.push_str("</body>\n</html>\n");
    page
}

/// A line chart of `points` (x, y) with labelled x ticks and a y axis from 0 to the maximum.
fn chart(page: &mut String, id: &str, points: &[(f64, f64)], xticks: &[(f64, String)], unit: &str) {
    let x_max = points
        .iter()
        .map(|p| p.0)
        .chain(xticks.iter().map(|t| t.0))
        .fold(1e-9, f64::max);
    let y_max = points.iter().map(|p| p.1).fold(1e-9, f64::max) * 1.1;
    let sx = |x: f64| LEFT + x / x_max * (WIDTH - LEFT - RIGHT);
    let sy = |y: f64| HEIGHT - BOTTOM - y / y_max * (HEIGHT - BOTTOM - TOP);
    let _ = writeln!(
        page,
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\">"
    );
    let _ = writeln!(
        page,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        WIDTH - LEFT - RIGHT,
        HEIGHT - BOTTOM - TOP
    );
    for (x, label) in xticks {
        let _ = writeln!(
            page,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            sx(*x),
            HEIGHT - BOTTOM + 16.0,
            escape(label)
        );
    }
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = writeln!(
            page,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            sy(y) + 4.0,
            if y_max >= 100.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        );
    }
    let _ = writeln!(
        page,
        "<text x=\"12\" y=\"{:.1}\" font-size=\"11\" transform=\"rotate(-90 12 {:.1})\" \
         text-anchor=\"middle\">{}</text>",
        HEIGHT / 2.0,
        HEIGHT / 2.0,
        escape(unit)
    );
    let path: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
        .collect();
    let _ = writeln!(
        page,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n</svg>",
        path.join(" ")
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
