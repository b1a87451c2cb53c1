//! The results as a hand-written SVG bar chart: one group per scenario, one bar
//! per server (median req/s, whiskers from the slowest to the fastest round),
//! scaled within its group because scenarios differ by orders of magnitude.

use std::fmt::Write as _;

use crate::report::{mib, ratio, Machine, Memory, Row, Server, Target};

const WIDTH: f64 = 1000.0;
const LABEL_W: f64 = 190.0;
const PLOT_W: f64 = 470.0;
const BAR_H: f64 = 20.0;
const LINE_H: f64 = 18.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(s: Server) -> &'static str {
    match s {
        Server::Plughost | Server::PlughostNoCache | Server::PlughostDeploy => "#2b6cb0",
        Server::Nginx => "#2f855a",
        Server::Baseline | Server::BaselineSameHead | Server::BaselineSameHeadStat => "#6b46c1",
    }
}

/// Thousands separators: 12345 -> 12,345.
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// At most `n` characters, with an ellipsis when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

pub fn chart(
    rows: &[Row],
    mem: &Memory,
    targets: &[Target],
    machine: &Machine,
    rounds: u32,
    duration: u32,
) -> String {
    let mut body = String::new();
    let mut y = 20.0;
    let title = format!("plughost load benchmark, {}", machine.date);
    let _ = writeln!(
        body,
        r#"<text x="10" y="{y}" font-size="16" font-weight="bold">{}</text>"#,
        esc(&title)
    );
    for line in [
        format!(
            "{} CPUs: {} | commit {} | load average at start {}",
            machine.nproc, machine.cpu, machine.commit, machine.loadavg
        ),
        format!(
            "requests/second on loopback (wrk --latency): bar = median of {rounds} rounds of {duration} s, whiskers = min to max; bars are scaled within each scenario"
        ),
    ] {
        y += LINE_H;
        let _ = writeln!(
            body,
            r##"<text x="10" y="{y}" font-size="11" fill="#444">{}</text>"##,
            esc(&line)
        );
    }
    y += LINE_H;

    let mut scenarios: Vec<&str> = Vec::new();
    for r in rows {
        if !scenarios.contains(&r.scenario) {
            scenarios.push(r.scenario);
        }
    }
    for scenario in scenarios {
        let group: Vec<&Row> = rows.iter().filter(|r| r.scenario == scenario).collect();
        let max = group
            .iter()
            .map(|r| r.rps_max())
            .filter(|v| v.is_finite())
            .fold(1.0_f64, f64::max);
        y += 10.0;
        let _ = writeln!(
            body,
            r#"<text x="10" y="{}" font-size="13" font-weight="bold">{} ({} connections)</text>"#,
            y + 4.0,
            esc(group[0].title),
            group[0].connections
        );
        y += LINE_H - 2.0;
        for r in group {
            let scale = |v: f64| {
                if v.is_finite() {
                    LABEL_W + v / max * PLOT_W
                } else {
                    LABEL_W
                }
            };
            let (med, lo, hi) = (
                scale(r.rps_median()),
                scale(r.rps_min()),
                scale(r.rps_max()),
            );
            let mid = y + BAR_H / 2.0;
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" font-size="12" text-anchor="end">{}</text>"#,
                LABEL_W - 8.0,
                mid + 4.0,
                esc(r.server.name())
            );
            let _ = writeln!(
                body,
                r#"<rect x="{LABEL_W}" y="{y}" width="{:.1}" height="{BAR_H}" fill="{}"/>"#,
                (med - LABEL_W).max(0.5),
                color(r.server)
            );
            let _ = writeln!(
                body,
                r##"<path d="M{lo:.1} {mid} H{hi:.1} M{lo:.1} {a} V{b} M{hi:.1} {a} V{b}" stroke="#111" stroke-width="1.2"/>"##,
                a = mid - 5.0,
                b = mid + 5.0
            );
            let mut label = format!(
                "{} req/s, p99 {:.2} ms",
                thousands(r.rps_median()),
                r.p99_ms()
            );
            if let Some((x, other)) = ratio(rows, r) {
                let _ = write!(label, ", {x:.2}x {}", other.name());
            }
            if r.errors() > 0 {
                let _ = write!(label, ", {} errors", r.errors());
            }
            if let Some(kib) = r.peak_rss_kib {
                let _ = write!(label, ", peak RSS {}", mib(kib));
            }
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{}" font-size="11">{}</text>"#,
                hi.max(med) + 6.0,
                mid + 4.0,
                esc(&label)
            );
            y += BAR_H + 6.0;
        }
    }

    y += 14.0;
    let _ = writeln!(
        body,
        r#"<text x="10" y="{y}" font-size="13" font-weight="bold">Memory</text>"#
    );
    for (s, kib) in &mem.idle {
        y += LINE_H;
        let _ = writeln!(
            body,
            r#"<text x="20" y="{y}" font-size="12">idle RSS, {}: {}</text>"#,
            esc(s.name()),
            mib(*kib)
        );
    }
    for (s, kib) in &mem.with_conns {
        y += LINE_H;
        let _ = writeln!(
            body,
            r#"<text x="20" y="{y}" font-size="12">RSS with {} idle keep-alive connections, {}: {}</text>"#,
            mem.conns,
            esc(s.name()),
            mib(*kib)
        );
    }
    y += LINE_H + 8.0;
    let _ = writeln!(
        body,
        r#"<text x="10" y="{y}" font-size="13" font-weight="bold">Targets</text>"#
    );
    for t in targets {
        y += LINE_H;
        let fill = if t.pass { "#2f855a" } else { "#c53030" };
        let _ = writeln!(
            body,
            r#"<text x="20" y="{y}" font-size="12"><tspan font-weight="bold" fill="{fill}">{}</tspan>  {}: {}</text>"#,
            t.verdict(),
            esc(&t.what),
            esc(&clip(
                &t.measured,
                150usize.saturating_sub(t.what.len()).max(20)
            ))
        );
    }
    let height = y + 16.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n\
         <title>{}</title>\n\
         <desc>{}</desc>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         {body}</svg>\n",
        esc(&title),
        esc(&machine.describe())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_escaping() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
