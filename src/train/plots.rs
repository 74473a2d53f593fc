//! Evaluation plots as PNG (plotters, drawn into a buffer; text in the bundled DejaVu
//! font, so no system fonts are needed): the confusion matrix, ROC curves, and the
//! estimated against the measured T-score.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use super::metrics::{Metrics, CLASS_NAMES};
use super::TrainError;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (640, 560);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is a valid TTF; a failure would only lose the text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err<E: std::fmt::Display>(e: E) -> TrainError {
    TrainError::Plot(e.to_string())
}

/// Draw with `f` into an RGB buffer and write it as PNG.
fn draw(
    path: &Path,
    f: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    register_font();
    let mut buf = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        f(root.clone())?;
        root.present().map_err(err)?;
    }
    let file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(err)?;
    w.write_image_data(&buf).map_err(err)?;
    Ok(())
}

/// Confusion matrix: truth in rows (normal at the top), prediction in columns, each cell
/// shaded by its share of the row.
pub fn confusion(path: &Path, m: &Metrics, title: &str) -> Result<(), TrainError> {
    draw(path, |root| {
        let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(110)
            .build_cartesian_2d((0i32..2).into_segmented(), (0i32..2).into_segmented())
            .map_err(err)?;
        // Row r of the matrix is drawn at y = 2 - r, so normal is on top.
        let name = |v: &SegmentValue<i32>, flip: bool| match v {
            SegmentValue::CenterOf(i) => {
                let i = if flip { 2 - *i } else { *i };
                CLASS_NAMES
                    .get(i as usize)
                    .map_or(String::new(), |s| s.to_string())
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("truth")
            .x_label_formatter(&|v| name(v, false))
            .y_label_formatter(&|v| name(v, true))
            .draw()
            .map_err(err)?;
        for (t, row) in m.confusion.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (p, &n) in row.iter().enumerate() {
                let share = n as f64 / total;
                let shade = (255.0 * (1.0 - 0.8 * share)) as u8;
                let (x, y) = (p as i32, 2 - t as i32);
                chart
                    .draw_series([Rectangle::new(
                        [
                            (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                            (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                        ],
                        RGBColor(shade, shade, 255).filled(),
                    )])
                    .map_err(err)?;
                chart
                    .draw_series([Text::new(
                        format!("{n}"),
                        (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                        ("sans-serif", 22),
                    )])
                    .map_err(err)?;
            }
        }
        Ok(())
    })
}

/// ROC curves, each with its AUC in the legend, and the chance diagonal.
pub fn roc(path: &Path, curves: &[(String, Vec<(f64, f64)>)]) -> Result<(), TrainError> {
    draw(path, |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption("ROC, one vs rest (per study)", ("sans-serif", 20))
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1.0, 0f64..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("1 - specificity")
            .y_desc("sensitivity")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], &BLACK.mix(0.3)))
            .map_err(err)?;
        for (i, (name, pts)) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// Estimated against measured T-score, with the identity and the WHO cut-offs.
pub fn t_scores(path: &Path, pairs: &[(f64, f64)]) -> Result<(), TrainError> {
    draw(path, |root| {
        let lo = pairs.iter().map(|p| p.0.min(p.1)).fold(-4.5f64, f64::min) - 0.2;
        let hi = pairs.iter().map(|p| p.0.max(p.1)).fold(2.5f64, f64::max) + 0.2;
        let mut chart = ChartBuilder::on(&root)
            .caption("T-score: estimate vs DXA (per study)", ("sans-serif", 20))
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("measured T-score")
            .y_desc("estimated T-score")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new([(lo, lo), (hi, hi)], &BLACK.mix(0.4)))
            .map_err(err)?;
        for cut in [-1.0, -2.5] {
            chart
                .draw_series(LineSeries::new([(cut, lo), (cut, hi)], &RED.mix(0.3)))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new([(lo, cut), (hi, cut)], &RED.mix(0.3)))
                .map_err(err)?;
        }
        chart
            .draw_series(
                pairs
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, BLUE.mix(0.6).filled())),
            )
            .map_err(err)?;
        Ok(())
    })
}
