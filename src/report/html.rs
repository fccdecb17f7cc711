//! `bench --report FILE.html`: one self-contained page (no script, no external resource) with what
//! was run (command line, version, date, threads, transport), the summary, the latency-by-percentile
//! curve (and under `--rate` the service time beside it) and the responses-per-second timeline,
//! drawn as inline SVG by hand: two line charts do not need a plotting crate.
//!
//! The page must not lie: the timeline's last second is usually partial, so it is drawn as its rate
//! over its real length (or left out when too short to be a rate, and the page says so), and the
//! axes carry round ticks (1, 2 or 5 × 10^k) that a reader can interpolate between.

use std::fmt::Write as _;

use super::summary::Summary;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 20.0;
const RIGHT: f64 = 20.0;
/// A last bucket shorter than this is left out of the timeline: a few milliseconds of responses
/// divided by a few milliseconds is noise (one batch of completions), not a rate.
const MIN_PARTIAL_S: f64 = 0.1;
const LATENCY_COLOUR: &str = "#1f77b4";
const SERVICE_COLOUR: &str = "#ff7f0e";

/// What the page says about the run beside its summary.
pub struct Page<'a> {
    pub title: &'a str,
    /// The command line as typed (see [`command_line`]).
    pub command: &'a str,
    /// When the run ended, e.g. "2026-12-04 14:20:07 UTC" (see [`utc_now`]).
    pub date: &'a str,
    /// "tcp" or "direct", as `--transport` names them.
    pub transport: &'a str,
    /// (percentile, µs) from `Latency::curve`: from when each request was due.
    pub latency: &'a [(f64, u64)],
    /// Open loop only: (percentile, µs) of the service time, from each request's actual write.
    pub service: Option<&'a [(f64, u64)]>,
}

/// The page for one run.
pub fn render(page: &Page, summary: &Summary) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}pre{{background:#f4f4f4;padding:1em}}\
         svg{{display:block;margin:1em 0}}table.run td{{padding:0.1em 1em 0.1em 0;vertical-align:top}}\
         table.run td:first-child{{color:#666}}code{{word-break:break-all}}p.note{{color:#555;font-size:90%}}\
         </style>\n</head>\n<body>\n<h1>{}</h1>\n<table class=\"run\">\n",
        escape(page.title),
        escape(page.title),
    );
    let threads = summary.threads.to_string();
    let rows = [
        ("command", format!("<code>{}</code>", escape(page.command))),
        (
            "version",
            format!("ringfetch {}", env!("CARGO_PKG_VERSION")),
        ),
        ("date", escape(page.date)),
        ("threads", threads),
        ("transport", escape(page.transport)),
    ];
    for (name, value) in rows {
        let _ = writeln!(
            out,
            "<tr id=\"{name}\"><td>{name}</td><td>{value}</td></tr>"
        );
    }
    let _ = write!(
        out,
        "</table>\n<pre>{}</pre>\n",
        escape(&summary.to_text(page.title))
    );

    out.push_str("<h2>Latency by percentile</h2>\n");
    let mut series = vec![Series {
        name: if page.service.is_some() {
            "latency from when each request was due (coordinated omission corrected)"
        } else {
            "latency"
        },
        colour: LATENCY_COLOUR,
        points: percentile_points(page.latency),
    }];
    if let Some(service) = page.service {
        series.push(Series {
            name: "service time, from each request's actual write",
            colour: SERVICE_COLOUR,
            points: percentile_points(service),
        });
    }
    // Percentiles on a log scale of 1/(1-p), as HdrHistogram plots them: the tail gets the room.
    let ticks: Vec<(f64, String)> = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
        .iter()
        .map(|p: &f64| (percentile_x(*p), format!("{p}%")))
        .collect();
    chart(&mut out, "latency", &series, &ticks, "ms");
    if page.service.is_some() {
        out.push_str(
            "<p class=\"note\">Under <code>--rate</code> the gap between the two curves is the time \
             requests waited for their turn: the service time alone hides it.</p>\n",
        );
    }

    out.push_str("<h2>Responses per second</h2>\n");
    let (points, note) = timeline_points(&summary.timeline, summary.elapsed_s);
    let x_end = points.last().map_or(1.0, |p| p.0).max(summary.elapsed_s);
    let step = round_step(x_end, 10);
    let ticks: Vec<(f64, String)> = (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|s| *s <= x_end + step * 1e-9)
        .map(|s| (s, format!("{}s", number(s, step))))
        .collect();
    let series = [Series {
        name: "responses/s",
        colour: LATENCY_COLOUR,
        points,
    }];
    chart(&mut out, "throughput", &series, &ticks, "responses/s");
    if let Some(note) = note {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"partial\">{}</p>",
            escape(&note)
        );
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn percentile_x(p: f64) -> f64 {
    (1.0 / (1.0 - p / 100.0)).log10()
}

fn percentile_points(curve: &[(f64, u64)]) -> Vec<(f64, f64)> {
    curve
        .iter()
        .filter(|(p, _)| *p < 100.0)
        .map(|&(p, us)| (percentile_x(p), us as f64 / 1000.0))
        .collect()
}

/// The timeline as (seconds, responses/s), each point in the middle of its bucket. Every bucket but
/// the last is a whole second; the last lasts what is left of `elapsed_s`. Drawing it as if whole
/// would show a collapse that never happened, so it is its count over its real length, or left out
/// when shorter than [`MIN_PARTIAL_S`]; either way the note says so.
fn timeline_points(timeline: &[u64], elapsed_s: f64) -> (Vec<(f64, f64)>, Option<String>) {
    let Some((&last, whole)) = timeline.split_last() else {
        return (Vec::new(), None);
    };
    let mut points: Vec<(f64, f64)> = whole
        .iter()
        .enumerate()
        .map(|(s, &n)| (s as f64 + 0.5, n as f64))
        .collect();
    let start = whole.len() as f64;
    // elapsed_s is rounded to the millisecond; a last bucket within that of a second is whole.
    let length = (elapsed_s - start).clamp(0.0, 1.0);
    if length >= 0.999 {
        points.push((start + 0.5, last as f64));
        return (points, None);
    }
    if length < MIN_PARTIAL_S {
        let note = format!(
            "The run's last {:.3} s ({last} responses) are left out: too short to be a rate.",
            length
        );
        return (points, Some(note));
    }
    points.push((start + length / 2.0, last as f64 / length));
    let note = format!(
        "The last point covers the run's final {length:.2} s, drawn as its {last} responses over \
         {length:.2} s, not over a whole second."
    );
    (points, Some(note))
}

/// The axis step, 1, 2 or 5 × 10^k, that cuts `0..max` into at most `most` intervals.
fn round_step(max: f64, most: usize) -> f64 {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / most as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// `value`, a multiple of `step`, with as many decimals as the step needs and no more; thousands
/// as "k" so that 50000 reads 50k.
fn number(value: f64, step: f64) -> String {
    if step >= 1000.0 && value != 0.0 {
        return format!("{}k", number(value / 1000.0, step / 1000.0));
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{value:.decimals$}")
}

struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

/// A line chart of each series with labelled x ticks, a y axis from 0 to a round number above the
/// maximum with round ticks, and a legend when there is more than one series.
fn chart(out: &mut String, id: &str, series: &[Series], xticks: &[(f64, String)], unit: &str) {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x_max = all()
        .map(|p| p.0)
        .chain(xticks.iter().map(|t| t.0))
        .fold(1e-9, f64::max);
    let y_data = all().map(|p| p.1).fold(0.0, f64::max);
    let y_step = round_step(y_data, 5);
    // Room above the highest point, and the top on a tick.
    let y_max = ((y_data * 1.05 / y_step).ceil() * y_step).max(y_step);
    let sx = |x: f64| LEFT + x / x_max * (WIDTH - LEFT - RIGHT);
    let sy = |y: f64| HEIGHT - BOTTOM - y / y_max * (HEIGHT - BOTTOM - TOP);
    let _ = writeln!(
        out,
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\">"
    );
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        WIDTH - LEFT - RIGHT,
        HEIGHT - BOTTOM - TOP
    );
    for (x, label) in xticks {
        let _ = writeln!(
            out,
            "<text class=\"xtick\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            sx(*x),
            HEIGHT - BOTTOM + 16.0,
            escape(label)
        );
    }
    let mut i = 0.0;
    while i * y_step <= y_max * (1.0 + 1e-9) {
        let y = i * y_step;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\n\
             <text class=\"ytick\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            sy(y),
            sy(y),
            LEFT - 6.0,
            sy(y) + 4.0,
            number(y, y_step)
        );
        i += 1.0;
    }
    let _ = writeln!(
        out,
        "<text x=\"12\" y=\"{:.1}\" font-size=\"11\" transform=\"rotate(-90 12 {:.1})\" \
         text-anchor=\"middle\">{}</text>",
        HEIGHT / 2.0,
        HEIGHT / 2.0,
        escape(unit)
    );
    for s in series {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline class=\"series\" data-name=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            escape(s.name),
            s.colour,
            path.join(" ")
        );
    }
    if series.len() > 1 {
        for (k, s) in series.iter().enumerate() {
            let y = TOP + 16.0 + 16.0 * k as f64;
            let _ = writeln!(
                out,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"2\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
                LEFT + 10.0,
                LEFT + 30.0,
                s.colour,
                LEFT + 36.0,
                y + 4.0,
                escape(s.name)
            );
        }
    }
    out.push_str("</svg>\n");
}

/// The command line as typed, each argument quoted for a POSIX shell when it needs to be, so that
/// it can be pasted back.
pub fn command_line() -> String {
    std::env::args_os()
        .map(|a| {
            let a = a.to_string_lossy().into_owned();
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Now, as "YYYY-MM-DD HH:MM:SS UTC", without a date crate.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, on the era of 400 years that starts 0000-03-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::summary::Report;

    fn page_of(summary: &Summary, service: Option<&[(f64, u64)]>) -> String {
        let latency = [(0.0, 100), (50.0, 2_820), (99.0, 55_048)];
        let page = Page {
            title: "bench http://127.0.0.1:1/",
            command: "ringfetch bench --rate 50k 'a b'",
            date: "2026-12-04 14:20:07 UTC",
            transport: "direct",
            latency: &latency,
            service,
        };
        render(&page, summary)
    }

    fn summary(timeline: &[u64], elapsed: Duration) -> Summary {
        let mut s = Summary::new(&Report::default(), elapsed, 3);
        s.timeline = timeline.to_vec();
        s
    }

    /// The y value a polyline point stands for, from the chart's own scale (ticks at round values).
    fn polyline_points(html: &str, chart: &str) -> Vec<(f64, f64)> {
        let svg = &html[html.find(&format!("<svg id=\"{chart}\"")).expect("chart")..];
        let line = &svg[svg.find("points=\"").expect("points") + 8..];
        line[..line.find('"').unwrap()]
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_partial_last_second_is_drawn_at_its_real_rate() {
        // 3.5 s at 50k/s: the last bucket holds 25k responses in 0.5 s, a rate of 50k/s.
        let html = page_of(
            &summary(
                &[50_000, 50_000, 50_000, 25_000],
                Duration::from_millis(3_500),
            ),
            None,
        );
        let points = polyline_points(&html, "throughput");
        assert_eq!(points.len(), 4, "{html}");
        let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
        assert!(
            ys.iter().all(|y| (y - ys[0]).abs() < 0.5),
            "no false collapse: {ys:?}"
        );
        assert!(html.contains("final 0.50 s"), "{html}");
    }

    #[test]
    fn a_last_bucket_too_short_for_a_rate_is_left_out_and_said() {
        let html = page_of(
            &summary(
                &[50_000, 50_000, 50_000, 1_500],
                Duration::from_millis(3_030),
            ),
            None,
        );
        assert_eq!(polyline_points(&html, "throughput").len(), 3, "{html}");
        assert!(
            html.contains("last 0.030 s (1500 responses) are left out"),
            "{html}"
        );
        // A whole last second is drawn as it is, with no note.
        let html = page_of(
            &summary(&[50_000, 50_000], Duration::from_millis(2_000)),
            None,
        );
        assert_eq!(polyline_points(&html, "throughput").len(), 2);
        assert!(!html.contains("id=\"partial\""), "{html}");
    }

    #[test]
    fn ticks_are_round() {
        let html = page_of(
            &summary(&[55_048, 41_286, 50_000], Duration::from_millis(2_820)),
            None,
        );
        // Each axis's ticks are evenly spaced by 1, 2 or 5 x 10^k.
        let mut ticks = 0;
        for class in ["ytick", "xtick"] {
            for chart in ["<svg id=\"latency\"", "<svg id=\"throughput\""] {
                let svg = &html[html.find(chart).unwrap()..];
                let svg = &svg[..svg.find("</svg>").unwrap()];
                let values: Vec<f64> = svg
                    .match_indices(&format!("class=\"{class}\""))
                    .map(|(i, _)| {
                        let t = &svg[i..];
                        t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].to_string()
                    })
                    .filter(|t| !t.ends_with('%'))
                    .map(|t| {
                        let k = if t.ends_with('k') { 1000.0 } else { 1.0 };
                        t.trim_end_matches(['s', 'k'])
                            .parse::<f64>()
                            .unwrap_or_else(|_| panic!("{t}"))
                            * k
                    })
                    .collect();
                for w in values.windows(2) {
                    let step = w[1] - w[0];
                    let mantissa = step / 10f64.powf(step.log10().floor());
                    let round = [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6);
                    assert!(round, "{class} {values:?} not round: {svg}");
                    ticks += 1;
                }
            }
        }
        assert!(ticks >= 6, "{html}");
        assert_eq!(round_step(55_048.0, 5), 20_000.0);
        assert_eq!(round_step(2.82, 5), 1.0);
        assert_eq!(round_step(0.3, 5), 0.1);
        assert_eq!(round_step(3.5, 10), 0.5);
        assert_eq!(number(50_000.0, 10_000.0), "50k");
        assert_eq!(number(0.5, 0.5), "0.5");
    }

    #[test]
    fn both_curves_under_rate_and_the_run_in_the_header() {
        let service = [(0.0, 50), (50.0, 100), (99.0, 900)];
        let html = page_of(&summary(&[10], Duration::from_secs(1)), Some(&service));
        let latency = &html[html.find("<svg id=\"latency\"").unwrap()..];
        let latency = &latency[..latency.find("</svg>").unwrap()];
        assert_eq!(latency.matches("<polyline").count(), 2, "{latency}");
        assert!(latency.contains("service time"), "{latency}");
        assert!(
            latency.contains("coordinated omission corrected"),
            "{latency}"
        );
        let closed = page_of(&summary(&[10], Duration::from_secs(1)), None);
        assert_eq!(
            closed.matches("<polyline").count(),
            2,
            "one per chart: {closed}"
        );
        for (row, value) in [
            ("command", "ringfetch bench --rate 50k 'a b'"),
            ("version", concat!("ringfetch ", env!("CARGO_PKG_VERSION"))),
            ("date", "2026-12-04 14:20:07 UTC"),
            ("threads", "3"),
            ("transport", "direct"),
        ] {
            let line = html
                .lines()
                .find(|l| l.starts_with(&format!("<tr id=\"{row}\"")))
                .unwrap_or_else(|| panic!("{row}: {html}"));
            assert!(line.contains(&escape(value)), "{line}");
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_394_007), "2026-12-04 14:20:07 UTC");
    }
}
