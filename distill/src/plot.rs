//! The reports' SVG figures, drawn by hand: a line chart (accuracy per epoch, errors
//! against parameters), a reliability diagram and a heat map. Plain SVG 1.1 that any
//! browser shows.

use crate::calibration::Reliability;
use std::fmt::Write as _;

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// One line of a [`line_chart`].
pub struct Series {
    /// Its legend.
    pub label: String,
    /// `(x, y)` points, drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// The axes of a [`line_chart`].
pub struct Axes<'a> {
    /// Above the plot.
    pub title: &'a str,
    /// Under the x axis.
    pub x_label: &'a str,
    /// Beside the y axis.
    pub y_label: &'a str,
    /// A logarithmic x axis (parameter counts).
    pub log_x: bool,
}

fn open(s: &mut String, w: f64, h: f64, title: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        escape(title)
    );
}

/// `&`, `<` and `>` as entities.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Lines with markers and a legend on the right; the y range fits the data.
pub fn line_chart(axes: &Axes, series: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (780.0, 400.0, 70.0, 260.0, 30.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let tx = |x: f64| if axes.log_x { x.max(1e-12).log10() } else { x };
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    let (mut x0, mut x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| {
        (a.min(tx(x)), b.max(tx(x)))
    });
    let (mut y0, mut y1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| {
        (a.min(y), b.max(y))
    });
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    let pad = ((y1 - y0) * 0.08).max(1e-9);
    (y0, y1) = (y0 - pad, y1 + pad);
    let x = |v: f64| left + pw * (tx(v) - x0) / (x1 - x0);
    let y = |v: f64| top + ph * (1.0 - (v - y0) / (y1 - y0));
    let mut s = String::new();
    open(&mut s, w, h, axes.title);
    for i in 0..=5 {
        let v = y0 + (y1 - y0) * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            y(v) + 4.0,
            tick(v),
            yy = y(v)
        );
    }
    let mut xs: Vec<f64> = all().map(|(x, _)| x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for v in xs {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(v),
            top + ph + 18.0,
            tick(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 8.0,
        escape(axes.x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#,
        top + ph / 2.0,
        top + ph / 2.0,
        escape(axes.y_label)
    );
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    for (i, line) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = line.points.iter().map(|&(a, b)| (x(a), y(b))).collect();
        let text: Vec<String> = points
            .iter()
            .map(|(a, b)| format!("{a:.1},{b:.1}"))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            text.join(" ")
        );
        for (px, py) in points {
            let _ = writeln!(
                s,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{color}"/>"#
            );
        }
        let ly = top + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            w - right + 10.0,
            w - right + 30.0,
            w - right + 35.0,
            ly + 4.0,
            escape(&line.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A short axis label: integers as integers, else three significant digits.
fn tick(v: f64) -> String {
    if v.abs() >= 1e4 || (v.fract().abs() < 1e-9 && v.abs() >= 1.0) {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// One panel per network: the accuracy of each confidence bin (bars) against its mean
/// confidence, with the diagonal of perfect calibration and the ECE in the panel's title.
pub fn reliability_diagram(panels: &[(String, &Reliability)]) -> String {
    let side = 240.0;
    let (gap, top, left) = (50.0, 50.0, 50.0);
    let w = left + panels.len() as f64 * (side + gap);
    let h = top + side + 50.0;
    let mut s = String::new();
    open(
        &mut s,
        w,
        h,
        "Reliability on the test set: accuracy per confidence bin",
    );
    for (k, (label, r)) in panels.iter().enumerate() {
        let x0 = left + k as f64 * (side + gap);
        let bins = r.bins.len() as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{} (ECE {:.2} %)</text>"#,
            x0 + side / 2.0,
            top - 10.0,
            escape(label),
            100.0 * r.ece()
        );
        for (i, b) in r.bins.iter().enumerate() {
            if b.count == 0 {
                continue;
            }
            let acc = b.correct as f64 / b.count as f64;
            let bw = side / bins;
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#1f77b4" fill-opacity="0.7" stroke="white"><title>{} images, confidence {:.3}, accuracy {:.3}</title></rect>"##,
                x0 + i as f64 * bw,
                top + side * (1.0 - acc),
                bw,
                side * acc,
                b.count,
                b.confidence_sum / b.count as f64,
                acc
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{}" x2="{}" y2="{top}" stroke="#d62728" stroke-dasharray="4 3"/><rect x="{x0}" y="{top}" width="{side}" height="{side}" fill="none" stroke="black"/>"##,
            top + side,
            x0 + side
        );
        for v in [0.0, 0.5, 1.0] {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{v}</text><text x="{}" y="{:.1}" text-anchor="end">{v}</text>"#,
                x0 + side * v,
                top + side + 16.0,
                x0 - 4.0,
                top + side * (1.0 - v) + 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">confidence</text>"#,
            x0 + side / 2.0,
            top + side + 34.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A grid of cells shaded by `values[row][col]` (darker is lower, for error counts),
/// each labelled with `labels[row][col]`; a missing value is a grey cell.
pub struct HeatMap<'a> {
    /// Above the grid.
    pub title: &'a str,
    /// What the rows are (`T`).
    pub row_name: &'a str,
    /// One label per row.
    pub rows: Vec<String>,
    /// What the columns are (`alpha`).
    pub col_name: &'a str,
    /// One label per column.
    pub cols: Vec<String>,
    /// Per row, per column.
    pub values: Vec<Vec<Option<f64>>>,
    /// The text in each cell, per row, per column.
    pub labels: Vec<Vec<String>>,
    /// A cell drawn with a thick border (the best one).
    pub marked: Option<(usize, usize)>,
}

/// The SVG of a [`HeatMap`].
pub fn heat_map(m: &HeatMap) -> String {
    let (cw, ch, left, top) = (150.0, 54.0, 90.0, 60.0);
    let w = left + cw * m.cols.len() as f64 + 20.0;
    let h = top + ch * m.rows.len() as f64 + 30.0;
    let known = m.values.iter().flatten().flatten().copied();
    let lo = known.clone().fold(f64::INFINITY, f64::min);
    let hi = known.fold(f64::NEG_INFINITY, f64::max);
    let mut s = String::new();
    open(&mut s, w, h, m.title);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="42" text-anchor="middle">{}</text>"#,
        left + cw * m.cols.len() as f64 / 2.0,
        escape(m.col_name)
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{}" text-anchor="middle">{}</text>"#,
        top + ch * m.rows.len() as f64 / 2.0,
        escape(m.row_name)
    );
    for (j, c) in m.cols.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left + cw * (j as f64 + 0.5),
            top - 4.0,
            escape(c)
        );
    }
    for (i, r) in m.rows.iter().enumerate() {
        let y = top + ch * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + ch / 2.0 + 4.0,
            escape(r)
        );
        for j in 0..m.cols.len() {
            let x = left + cw * j as f64;
            let value = m
                .values
                .get(i)
                .and_then(|row| row.get(j))
                .copied()
                .flatten();
            let fill = match value {
                // Low (good) values dark blue, high ones pale.
                Some(v) => {
                    let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
                    let c = |dark: f64, light: f64| (dark + (light - dark) * t).round() as u8;
                    format!(
                        "#{:02x}{:02x}{:02x}",
                        c(33.0, 222.0),
                        c(102.0, 235.0),
                        c(172.0, 247.0)
                    )
                }
                None => "#dddddd".to_string(),
            };
            let text_color = match value.map(|v| hi > lo && (v - lo) / (hi - lo) < 0.5) {
                Some(true) => "white",
                _ => "black",
            };
            let stroke = match m.marked == Some((i, j)) {
                true => r#"stroke="black" stroke-width="3""#,
                false => r#"stroke="white""#,
            };
            let label = m
                .labels
                .get(i)
                .and_then(|row| row.get(j))
                .map_or("", String::as_str);
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="{fill}" {stroke}/><text x="{}" y="{}" text-anchor="middle" fill="{text_color}">{}</text>"#,
                x + cw / 2.0,
                y + ch / 2.0 + 4.0,
                escape(label)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn well_formed(svg: &str) {
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn figures_are_whole_svg_documents() {
        let series = [
            Series {
                label: "a <b>".into(),
                points: vec![(1.0, 0.9), (2.0, 0.95)],
            },
            Series {
                label: "single".into(),
                points: vec![(1.0, 0.5)],
            },
        ];
        let axes = Axes {
            title: "t",
            x_label: "epoch",
            y_label: "accuracy",
            log_x: false,
        };
        let chart = line_chart(&axes, &series);
        well_formed(&chart);
        assert_eq!(chart.matches("<polyline").count(), 2);
        assert!(chart.contains("a &lt;b&gt;"));
        well_formed(&line_chart(&axes, &[]));
        let mut r = Reliability::new(15);
        r.add(0.97, true);
        let diagram = reliability_diagram(&[("teacher".into(), &r)]);
        well_formed(&diagram);
        assert!(diagram.contains("teacher (ECE 3.00 %)"), "{diagram}");
        let map = heat_map(&HeatMap {
            title: "sweep",
            row_name: "T",
            rows: vec!["1".into(), "2".into()],
            col_name: "alpha",
            cols: vec!["0.5".into()],
            values: vec![vec![Some(100.0)], vec![None]],
            labels: vec![vec!["100".into()], vec!["-".into()]],
            marked: Some((0, 0)),
        });
        well_formed(&map);
        assert_eq!(map.matches("<rect x=").count(), 2);
        assert!(map.contains(r#"stroke-width="3""#));
    }
}
