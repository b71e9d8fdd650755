//! The chart of the per-packet ratios: one bar per configuration that is
//! not a floor, from 1 (the floor) to its median, whiskers from min to max,
//! drawn by gnuplot (Debian package gnuplot-nox).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{
    flood::{self, Row},
    traffic::FloodKind,
};

/// The chart's data: one line per non-floor configuration of each flood:
/// label, median, min, max ratio, and the flood's colour index.
pub fn chart_data(rows: &[Row]) -> String {
    let mut out = String::from("# label median min max flood\n");
    for r in rows {
        if r.config == flood::floor_of(r.flood).key() || r.ratio.is_empty() {
            continue;
        }
        let colour = match r.flood {
            FloodKind::Dns => 1,
            FloodKind::Syn => 2,
            FloodKind::Udp => 3,
        };
        let _ = writeln!(
            out,
            "\"{}: {}\" {:.4} {:.4} {:.4} {colour}",
            r.flood.name(),
            r.name.replace('"', "'"),
            r.ratio.median,
            r.ratio.min,
            r.ratio.max
        );
    }
    out
}

/// Writes the chart with gnuplot; returns the PNG's path.
pub fn chart(rows: &[Row], dir: &Path, title: &str) -> anyhow::Result<PathBuf> {
    let data = dir.join("ratios.dat");
    let png = dir.join("ratios.png");
    fs::write(&data, chart_data(rows))?;
    // Bars grow from 1 (the floor) to the median, whiskers span min..max.
    let script = format!(
        r##"set terminal pngcairo size 1400,800 font "DejaVu Sans,11" noenhanced
set output "{png}"
set title "{title}"
set ylabel "DUT CPU time per packet / floor of the same round (log scale)"
set logscale y
set yrange [0.7:*]
set offsets 0.6, 0.6, 0, 0
set grid ytics mytics
set mytics 10
set style fill solid 0.7 border -1
set xtics rotate by -35 left nomirror
set bmargin 14
set rmargin 14
set key top left box opaque
set linetype 1 lc rgb "#4477aa"
set linetype 2 lc rgb "#ee6677"
set linetype 3 lc rgb "#228833"
plot "{data}" using 0:(($2+1)/2):(0.35):(abs($2-1)/2):5:xtic(1) with boxxyerror lc variable notitle, \
     "{data}" using 0:2:3:4 with yerrorbars lc rgb "black" pt 0 notitle, \
     "{data}" using 0:4:(sprintf("%.2f", $2)) with labels offset 0,0.8 notitle, \
     1.25 with lines dt 2 lw 2 lc rgb "#cc3311" title "target for drop paths: 1.25", \
     1.4 with lines dt 3 lw 2 lc rgb "#aa7700" title "target for pass paths: 1.4", \
     NaN with boxes lt 1 title "unsolicited DNS flood (floor XDP_DROP)", \
     NaN with boxes lt 2 title "SYN flood (floor XDP_DROP)", \
     NaN with boxes lt 3 title "passed UDP (floor XDP_PASS)"
"##,
        png = png.display(),
        data = data.display(),
    );
    let script_path = dir.join("ratios.gp");
    fs::write(&script_path, script)?;
    let out = Command::new("gnuplot")
        .arg(&script_path)
        .output()
        .context("running gnuplot (Debian package gnuplot-nox)")?;
    if !out.status.success() {
        anyhow::bail!("gnuplot failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(png)
}
