//! The report's charts, drawn with plotters into SVG strings, PNG files or raw RGB buffers.
//!
//! Each chart is a plain data struct that implements [`Chart`]; the same drawing code runs on
//! every backend, so the inline SVG and the PNG beside the report always show the same picture.
//! Text uses the DejaVu Sans font embedded from `reports/fonts/`, so charts render identically on
//! machines without system fonts. This file must not read metric rows or decide what a metric
//! means: `mod.rs` turns rows into the series drawn here.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use chrono::NaiveDate;
use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::metric::MIN_SAMPLE;

/// Chart width in pixels (SVG user units and PNG pixels alike).
pub const WIDTH: u32 = 900;
/// Chart height in pixels.
pub const HEIGHT: u32 = 360;

/// DejaVu Sans (licence in `reports/fonts/LICENSE-DejaVu.txt`), embedded so that text measuring
/// and rasterising never depend on the fonts installed where the report is made.
static FONT: &[u8] = include_bytes!("../../reports/fonts/DejaVuSans.ttf");
/// The family every chart text asks for; the embedded font is registered under this name.
const FAMILY: &str = "sans-serif";

/// Most week labels on the x axis; at ~85 px per ISO date this fits the plotting width.
const MAX_WEEK_LABELS: usize = 9;

/// The Okabe–Ito palette (Okabe & Ito, "Color Universal Design", 2008): eight colours that stay
/// distinct under the common forms of colour blindness. Every data colour below is one of them;
/// series are also told apart by shape (bars, lines, markers) so no chart relies on hue alone.
pub mod okabe_ito {
    use plotters::style::RGBColor;
    /// Orange.
    pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
    /// Sky blue.
    pub const SKY_BLUE: RGBColor = RGBColor(86, 180, 233);
    /// Bluish green.
    pub const BLUISH_GREEN: RGBColor = RGBColor(0, 158, 115);
    /// Yellow.
    pub const YELLOW: RGBColor = RGBColor(240, 228, 66);
    /// Blue.
    pub const BLUE: RGBColor = RGBColor(0, 114, 178);
    /// Vermillion.
    pub const VERMILLION: RGBColor = RGBColor(213, 94, 0);
    /// Reddish purple.
    pub const REDDISH_PURPLE: RGBColor = RGBColor(204, 121, 167);
    /// Black.
    pub const BLACK: RGBColor = RGBColor(0, 0, 0);
}

const DEPLOY_COLOUR: RGBColor = okabe_ito::BLUE;
const DOWNTIME_COLOUR: RGBColor = okabe_ito::VERMILLION;
const CFR_COLOUR: RGBColor = okabe_ito::BLUE;
const MEETS_COLOUR: RGBColor = okabe_ito::BLUISH_GREEN;
const MISSES_COLOUR: RGBColor = okabe_ito::VERMILLION;
const RESOLVED_COLOUR: RGBColor = okabe_ito::SKY_BLUE;
const BACKLOG_COLOUR: RGBColor = okabe_ito::REDDISH_PURPLE;
/// Target lines are black and dashed: never mistaken for a data series.
const TARGET_COLOUR: RGBColor = okabe_ito::BLACK;
const INSUFFICIENT_COLOUR: RGBColor = RGBColor(140, 140, 140);
const NOTE_COLOUR: RGBColor = RGBColor(110, 110, 110);

/// What went wrong drawing a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The embedded font file is not a font plotters can read (a broken checkout).
    #[error(
        "the embedded font reports/fonts/DejaVuSans.ttf is not a readable TrueType font; restore it from git"
    )]
    Font,
    /// Plotters failed while drawing or while writing the PNG.
    #[error("cannot draw the {chart} chart into {target}: {message}")]
    Draw {
        /// Which chart.
        chart: &'static str,
        /// The PNG file, or `inline SVG` / `RGB buffer`.
        target: String,
        /// Plotters' message.
        message: String,
    },
}

/// A chart that can draw itself on any plotters backend.
pub trait Chart {
    /// Short name used in error messages.
    fn name(&self) -> &'static str;

    /// Draws the whole chart, title and legend included, onto `root`.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;
}

/// Weekly production deployments (bars, left axis) against weekly downtime (line, right axis).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentsVsDowntime {
    /// Period start dates, ascending; the other vectors are aligned with it.
    pub weeks: Vec<NaiveDate>,
    /// The periods' grain (`week`, `month`, …) for the titles; weeks when empty.
    pub grain: String,
    /// Production deployments per week; `None` is drawn as a gap.
    pub deployments: Vec<Option<f64>>,
    /// Downtime minutes per week; `None` is drawn as a gap.
    pub downtime_minutes: Vec<Option<f64>>,
    /// A shared KPI's target for downtime minutes per period, drawn as a dashed line on the
    /// right axis.
    pub downtime_target: Option<f64>,
}

/// One week of change failure rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateWeek {
    /// The rate as a ratio (0–1); `None` when there were no deployments to divide by.
    pub ratio: Option<f64>,
    /// Deployments behind the rate.
    pub n: i64,
}

/// Weekly change failure rate in percent, small samples marked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeFailureRate {
    /// Period start dates, ascending; `points` is aligned with it.
    pub weeks: Vec<NaiveDate>,
    /// The periods' grain (`week`, `month`, …) for the titles; weeks when empty.
    pub grain: String,
    /// The rate per week; `None` (no row at all) is a gap like a `None` ratio.
    pub points: Vec<Option<RateWeek>>,
    /// A shared KPI's target rate (a ratio), drawn as a dashed line.
    pub target: Option<f64>,
}

/// "Weekly", "Daily", "Monthly" or "Quarterly" for a grain (weeks when unknown).
pub fn cadence(grain: &str) -> &'static str {
    match grain {
        "day" => "Daily",
        "month" => "Monthly",
        "quarter" => "Quarterly",
        _ => "Weekly",
    }
}

/// "Week", "Day", "Month" or "Quarter" for a grain (weeks when unknown).
fn period_noun(grain: &str) -> &'static str {
    match grain {
        "day" => "Day",
        "month" => "Month",
        "quarter" => "Quarter",
        _ => "Week",
    }
}

/// Renders `chart` as a standalone `<svg>` element.
pub fn to_svg<C: Chart>(chart: &C) -> Result<String, ChartError> {
    ensure_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_and_present(chart, &root).map_err(|message| draw_error(chart, "inline SVG", message))?;
    }
    Ok(svg)
}

/// Renders `chart` into a PNG file at `path`.
pub fn to_png<C: Chart>(chart: &C, path: &Path) -> Result<(), ChartError> {
    ensure_font()?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    draw_and_present(chart, &root).map_err(|message| draw_error(chart, &path.display().to_string(), message))
}

/// Renders `chart` into a raw RGB buffer (`WIDTH × HEIGHT × 3` bytes), for tests and checks that
/// want pixels without decoding a PNG.
pub fn to_rgb<C: Chart>(chart: &C) -> Result<Vec<u8>, ChartError> {
    ensure_font()?;
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut buffer, (WIDTH, HEIGHT))
            .map_err(|e| draw_error(chart, "RGB buffer", e.to_string()))?;
        let root = backend.into_drawing_area();
        draw_and_present(chart, &root).map_err(|message| draw_error(chart, "RGB buffer", message))?;
    }
    Ok(buffer)
}

fn draw_and_present<C: Chart, DB: DrawingBackend>(
    chart: &C,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    chart.draw(root).map_err(|e| e.to_string())?;
    // present() is where the bitmap backend writes its file; its error must not be lost in Drop.
    root.present().map_err(|e| e.to_string())
}

fn draw_error<C: Chart>(chart: &C, target: &str, message: String) -> ChartError {
    ChartError::Draw {
        chart: chart.name(),
        target: target.to_owned(),
        message,
    }
}

/// Registers the embedded font once per process; plotters keeps a global font table.
fn ensure_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(ChartError::Font) }
}

/// The x axis: one slot per week, centred on integer positions, labelled with the week start.
///
/// A custom axis rather than plotters' date ranges because those pick "nice" dates that are not
/// week starts, and rather than a segmented axis because that cannot be empty (the no-data chart
/// still needs a frame).
#[derive(Debug, Clone)]
struct WeekAxis {
    weeks: Vec<NaiveDate>,
}

impl WeekAxis {
    fn slots(&self) -> usize {
        self.weeks.len().max(1)
    }

    /// The middle of the axis, where the "No data" note goes.
    fn centre(&self) -> f64 {
        (self.slots() as f64 - 1.0) / 2.0
    }
}

impl Ranged for WeekAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let range = self.range();
        let fraction = (value - range.start) / (range.end - range.start);
        limit.0 + (fraction * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let wanted = hint.max_num_points().min(MAX_WEEK_LABELS);
        if self.weeks.is_empty() || wanted == 0 {
            return Vec::new();
        }
        let step = self.weeks.len().div_ceil(wanted);
        (0..self.weeks.len()).step_by(step).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.slots() as f64 - 0.5
    }
}

impl ValueFormatter<f64> for WeekAxis {
    fn format_ext(&self, value: &f64) -> String {
        let index = value.round();
        if index < 0.0 || (value - index).abs() > 1e-6 {
            return String::new();
        }
        self.weeks
            .get(index as usize)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    }
}

/// Upper bound for a value axis: room above the highest value for the legend, never below
/// `floor` so that an all-zero series still gets a readable scale with whole-number ticks.
fn axis_top(values: impl Iterator<Item = f64>, floor: f64) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    (max * 1.4).max(floor)
}

/// Splits aligned values into runs of consecutive present values, so lines break at gaps.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => current.push((i as f64, *v)),
            _ => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Pads or cuts `values` to one entry per week, so mismatched input never indexes out of range.
fn aligned<T: Copy>(values: &[Option<T>], weeks: usize) -> Vec<Option<T>> {
    (0..weeks).map(|i| values.get(i).copied().flatten()).collect()
}

fn caption_style() -> TextStyle<'static> {
    (FAMILY, 20).into_font().color(&BLACK)
}

fn no_data_style() -> TextStyle<'static> {
    (FAMILY, 22)
        .into_font()
        .color(&NOTE_COLOUR)
        .pos(Pos::new(HPos::Center, VPos::Center))
}

fn whole_number(v: &f64) -> String {
    format!("{v:.0}")
}

impl Chart for DeploymentsVsDowntime {
    fn name(&self) -> &'static str {
        "deployments vs downtime"
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let axis = WeekAxis {
            weeks: self.weeks.clone(),
        };
        let deployments = aligned(&self.deployments, self.weeks.len());
        let downtime = aligned(&self.downtime_minutes, self.weeks.len());
        // Floors of 5 and 10 keep plotters' tick step at a whole number for small counts.
        let deploy_top = axis_top(deployments.iter().flatten().copied(), 5.0);
        let downtime_top = axis_top(
            downtime.iter().flatten().copied().chain(self.downtime_target),
            10.0,
        );

        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("{} production deployments vs downtime", cadence(&self.grain)),
                caption_style(),
            )
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .right_y_label_area_size(72)
            .build_cartesian_2d(axis.clone(), 0.0..deploy_top)?
            .set_secondary_coord(axis.clone(), 0.0..downtime_top);

        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(MAX_WEEK_LABELS)
            .y_labels(6)
            .y_label_formatter(&whole_number)
            .x_desc(format!("{} starting", period_noun(&self.grain)))
            .y_desc("Production deployments (count)")
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_labels(6)
            .y_label_formatter(&whole_number)
            .y_desc("Downtime (minutes)")
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .draw()?;

        let bar_style = DEPLOY_COLOUR.mix(0.75).filled();
        chart
            .draw_series(deployments.iter().enumerate().filter_map(|(i, v)| {
                let x = i as f64;
                v.map(|v| Rectangle::new([(x - 0.3, 0.0), (x + 0.3, v)], bar_style))
            }))?
            .label("Production deployments (left axis)")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], bar_style));

        let line_style = DOWNTIME_COLOUR.stroke_width(2);
        // The legend entry is an empty series so it exists even when every week is a gap.
        chart
            .draw_secondary_series(std::iter::empty::<PathElement<(f64, f64)>>())?
            .label("Downtime minutes (right axis)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], line_style));
        for run in runs(&downtime) {
            // Points as well as the line: a week between two gaps is a run of one, no line.
            chart.draw_secondary_series(run.iter().map(|&p| Circle::new(p, 3, DOWNTIME_COLOUR.filled())))?;
            chart.draw_secondary_series(LineSeries::new(run, line_style))?;
        }

        if let Some(target) = self.downtime_target.filter(|t| t.is_finite()) {
            let range = axis.range();
            chart
                .draw_secondary_series(DashedLineSeries::new(
                    [(range.start, target), (range.end, target)],
                    8,
                    5,
                    TARGET_COLOUR.stroke_width(2),
                ))?
                .label(format!("KPI target: {target:.0} min (right axis)"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], TARGET_COLOUR.stroke_width(2)));
        }

        if deployments.iter().all(Option::is_none) && downtime.iter().all(Option::is_none) {
            chart.draw_series(std::iter::once(Text::new(
                "No data",
                (axis.centre(), deploy_top / 2.0),
                no_data_style(),
            )))?;
        }

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
        Ok(())
    }
}

impl Chart for ChangeFailureRate {
    fn name(&self) -> &'static str {
        "change failure rate"
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let axis = WeekAxis {
            weeks: self.weeks.clone(),
        };
        let points = aligned(&self.points, self.weeks.len());
        let percent: Vec<Option<f64>> = points
            .iter()
            .map(|p| p.and_then(|p| p.ratio).map(|r| r * 100.0))
            .collect();
        // A rate cannot exceed 100 %; the floor of 10 keeps small rates off the bottom edge.
        let target = self.target.filter(|t| t.is_finite()).map(|t| t * 100.0);
        let top = axis_top(percent.iter().flatten().copied().chain(target), 10.0).min(100.0);

        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("{} change failure rate", cadence(&self.grain)),
                caption_style(),
            )
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            // A margin, not a right label area: plotters would repeat the y labels there.
            .margin_right(40)
            .build_cartesian_2d(axis.clone(), 0.0..top)?;

        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(MAX_WEEK_LABELS)
            .y_labels(6)
            .y_label_formatter(&|v| format!("{v:.0}%"))
            .x_desc(format!("{} starting", period_noun(&self.grain)))
            .y_desc("Change failure rate (%)")
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(WHITE)
            .draw()?;

        let line_style = CFR_COLOUR.stroke_width(2);
        for run in runs(&percent) {
            chart.draw_series(LineSeries::new(run, line_style))?;
        }

        if let Some(target) = target {
            let range = axis.range();
            chart
                .draw_series(DashedLineSeries::new(
                    [(range.start, target), (range.end, target)],
                    8,
                    5,
                    TARGET_COLOUR.stroke_width(2),
                ))?
                .label(format!("KPI target: {target:.1}%"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], TARGET_COLOUR.stroke_width(2)));
        }

        let is_small = |p: &RateWeek| p.n < MIN_SAMPLE;
        let solid: Vec<(f64, f64)> = points
            .iter()
            .zip(&percent)
            .enumerate()
            .filter_map(|(i, (p, v))| match (p, v) {
                (Some(p), Some(v)) if !is_small(p) => Some((i as f64, *v)),
                _ => None,
            })
            .collect();
        let hollow: Vec<(f64, f64)> = points
            .iter()
            .zip(&percent)
            .enumerate()
            .filter_map(|(i, (p, v))| match (p, v) {
                (Some(p), Some(v)) if is_small(p) => Some((i as f64, *v)),
                _ => None,
            })
            .collect();

        chart
            .draw_series(solid.into_iter().map(|p| Circle::new(p, 4, CFR_COLOUR.filled())))?
            .label(format!("Change failure rate (n \u{2265} {MIN_SAMPLE})"))
            .legend(|(x, y)| Circle::new((x + 7, y), 4, CFR_COLOUR.filled()));
        // White-filled first so the line does not show through the hollow marker.
        chart.draw_series(hollow.iter().map(|&p| Circle::new(p, 5, WHITE.filled())))?;
        chart
            .draw_series(
                hollow
                    .iter()
                    .map(|&p| Circle::new(p, 5, INSUFFICIENT_COLOUR.stroke_width(2))),
            )?
            .label(format!("n < {MIN_SAMPLE}: insufficient data"))
            .legend(|(x, y)| Circle::new((x + 7, y), 5, INSUFFICIENT_COLOUR.stroke_width(2)));

        if percent.iter().all(Option::is_none) {
            chart.draw_series(std::iter::once(Text::new(
                "No data",
                (axis.centre(), top / 2.0),
                no_data_style(),
            )))?;
        }

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
        Ok(())
    }
}

/// One service in the per-service scatter.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePoint {
    /// Service name from the data (plotters escapes it in SVG text).
    pub name: String,
    /// Production deployments in the period.
    pub deployments: f64,
    /// Downtime minutes in the period.
    pub downtime_minutes: f64,
    /// Whether to print the name beside the point (the few that matter; all would be unreadable).
    pub labelled: bool,
}

/// Per service: production deployments (x) against downtime minutes (y) over the period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceScatter {
    /// One point per service with both values.
    pub points: Vec<ServicePoint>,
}

/// One service's availability against its objective.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAvailability {
    /// Service name from the data.
    pub name: String,
    /// Availability over the period (0–1); `None` draws no bar.
    pub availability: Option<f64>,
    /// The service's availability objective (0–1).
    pub slo: f64,
    /// Too few samples behind the figure to judge it against the SLO: drawn grey.
    pub insufficient: bool,
}

/// Availability per service as dots, each with its SLO marked; the worst on top.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AvailabilityVsSlo {
    /// The services to draw, worst first (the caller picks and orders them).
    pub services: Vec<ServiceAvailability>,
}

/// Tickets resolved per period (bars) and the open backlog at each period's end (line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BacklogTrend {
    /// Period start dates, ascending; the other vectors are aligned with it.
    pub weeks: Vec<NaiveDate>,
    /// The periods' grain (`week`, `month`, …) for the titles; weeks when empty.
    pub grain: String,
    /// Tickets resolved per period.
    pub resolved: Vec<Option<f64>>,
    /// Tickets open at the end of each period.
    pub backlog: Vec<Option<f64>>,
}

/// A categorical axis: one slot per label, centred on integer positions. Like [`WeekAxis`] but
/// with names; every label is drawn, so callers keep the list short.
#[derive(Debug, Clone)]
struct LabelAxis {
    labels: Vec<String>,
}

impl Ranged for LabelAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let range = self.range();
        let fraction = (value - range.start) / (range.end - range.start);
        limit.0 + (fraction * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        (0..self.labels.len())
            .filter(|&i| !self.labels[i].is_empty())
            .map(|i| i as f64)
            .collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.labels.len().max(1) as f64 - 0.5
    }
}

impl ValueFormatter<f64> for LabelAxis {
    fn format_ext(&self, value: &f64) -> String {
        let index = value.round();
        if index < 0.0 || (value - index).abs() > 1e-6 {
            return String::new();
        }
        self.labels
            .get(index as usize)
            .map(|l| shorten(l, 22))
            .unwrap_or_default()
    }
}

/// `text` cut to `max` characters with an ellipsis, so a long name cannot push an axis off the chart.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('\u{2026}');
        cut
    }
}

fn draw_legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
}

impl Chart for ServiceScatter {
    fn name(&self) -> &'static str {
        "deployments vs downtime per service"
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let points: Vec<&ServicePoint> = self
            .points
            .iter()
            .filter(|p| p.deployments.is_finite() && p.downtime_minutes.is_finite())
            .collect();
        let x_top = axis_top(points.iter().map(|p| p.deployments), 5.0);
        let y_top = axis_top(points.iter().map(|p| p.downtime_minutes), 10.0);

        let mut chart = ChartBuilder::on(root)
            .caption("Production deployments vs downtime, per service", caption_style())
            .margin(12)
            .margin_right(40)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_top, 0.0..y_top)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&whole_number)
            .y_label_formatter(&whole_number)
            .x_desc("Production deployments in the period (count)")
            .y_desc("Downtime in the period (minutes)")
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(235, 235, 235))
            .draw()?;

        chart
            .draw_series(points.iter().map(|p| {
                Circle::new(
                    (p.deployments, p.downtime_minutes),
                    5,
                    DEPLOY_COLOUR.mix(0.8).filled(),
                )
            }))?
            .label("One service")
            .legend(|(x, y)| Circle::new((x + 7, y), 5, DEPLOY_COLOUR.filled()));
        let label_style = (FAMILY, 12).into_font().color(&BLACK);
        chart.draw_series(points.iter().filter(|p| p.labelled).map(|p| {
            Text::new(
                shorten(&p.name, 24),
                (p.deployments + x_top * 0.01, p.downtime_minutes + y_top * 0.02),
                label_style.clone(),
            )
        }))?;
        if points.is_empty() {
            chart.draw_series(std::iter::once(Text::new(
                "No data",
                (x_top / 2.0, y_top / 2.0),
                no_data_style(),
            )))?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// Category slots left empty at the top of the availability chart for its legend.
const LEGEND_SLOTS: usize = 3;

impl Chart for AvailabilityVsSlo {
    fn name(&self) -> &'static str {
        "availability vs SLO"
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        // Worst first in the list, drawn top down: plotters' y grows upwards, so reverse.
        let rows: Vec<&ServiceAvailability> = self.services.iter().rev().collect();
        // Empty slots above the services keep the legend clear of bars and SLO marks.
        let axis = LabelAxis {
            labels: rows
                .iter()
                .map(|s| s.name.clone())
                .chain(std::iter::repeat_n(String::new(), LEGEND_SLOTS))
                .collect(),
        };
        let percents = rows
            .iter()
            .flat_map(|s| [s.availability.map(|a| a * 100.0), Some(s.slo * 100.0)])
            .flatten()
            .filter(|v| v.is_finite());
        // Availability lives near 100%: start the axis a little below the lowest value so the
        // differences that matter are visible; the axis label says where it starts.
        let low = percents.fold(100.0_f64, f64::min);
        let left = ((low - (100.0 - low).max(0.05) * 0.5) * 100.0).floor() / 100.0;
        let left = left.clamp(0.0, 99.9);

        let mut chart = ChartBuilder::on(root)
            .caption("Availability against SLO, per service", caption_style())
            .margin(12)
            .margin_right(40)
            .x_label_area_size(48)
            .y_label_area_size(170)
            .build_cartesian_2d(left..100.0, axis.clone())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.2}%"))
            .x_desc(format!(
                "Availability in the period (%, axis starts at {left:.2}%)"
            ))
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(235, 235, 235))
            .draw()?;

        // Dots, not bars: the axis is cut near 100%, and a bar's length from a cut axis would
        // exaggerate the gaps; a dot's position reads the same on any axis.
        let dot = |s: &ServiceAvailability, i: usize, judged: Judged| {
            let a = s.availability.filter(|a| a.is_finite())?;
            let this = if s.insufficient {
                Judged::Insufficient
            } else if a >= s.slo {
                Judged::Meets
            } else {
                Judged::Misses
            };
            (this == judged).then(|| Circle::new((a * 100.0, i as f64), 6, judged.colour().filled()))
        };
        for (judged, label) in [
            (Judged::Meets, "Meets its SLO"),
            (Judged::Misses, "Below its SLO"),
            (Judged::Insufficient, "Too few samples to judge"),
        ] {
            if !rows.iter().enumerate().any(|(i, s)| dot(s, i, judged).is_some()) {
                continue;
            }
            chart
                .draw_series(rows.iter().enumerate().filter_map(|(i, s)| dot(s, i, judged)))?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 7, y), 5, judged.colour().filled()));
        }
        chart
            .draw_series(rows.iter().enumerate().map(|(i, s)| {
                let y = i as f64;
                PathElement::new(
                    vec![(s.slo * 100.0, y - 0.45), (s.slo * 100.0, y + 0.45)],
                    TARGET_COLOUR.stroke_width(3),
                )
            }))?
            .label("SLO target")
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x + 7, y - 6), (x + 7, y + 6)],
                    TARGET_COLOUR.stroke_width(3),
                )
            });
        if rows.iter().all(|s| s.availability.is_none()) {
            chart.draw_series(std::iter::once(Text::new(
                "No data",
                ((left + 100.0) / 2.0, rows.len() as f64 / 2.0),
                no_data_style(),
            )))?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// How a service's availability dot is judged and coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    Meets,
    Misses,
    Insufficient,
}

impl Judged {
    fn colour(self) -> RGBColor {
        match self {
            Judged::Meets => MEETS_COLOUR,
            Judged::Misses => MISSES_COLOUR,
            Judged::Insufficient => INSUFFICIENT_COLOUR,
        }
    }
}

impl Chart for BacklogTrend {
    fn name(&self) -> &'static str {
        "ticket backlog"
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let axis = WeekAxis {
            weeks: self.weeks.clone(),
        };
        let resolved = aligned(&self.resolved, self.weeks.len());
        let backlog = aligned(&self.backlog, self.weeks.len());
        let top = axis_top(resolved.iter().chain(&backlog).flatten().copied(), 5.0);

        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("{} tickets resolved and open backlog", cadence(&self.grain)),
                caption_style(),
            )
            .margin(12)
            .margin_right(40)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(axis.clone(), 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(MAX_WEEK_LABELS)
            .y_labels(6)
            .y_label_formatter(&whole_number)
            .x_desc(format!("{} starting", period_noun(&self.grain)))
            .y_desc("Tickets (count)")
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(WHITE)
            .draw()?;

        let bar_style = RESOLVED_COLOUR.mix(0.85).filled();
        chart
            .draw_series(resolved.iter().enumerate().filter_map(|(i, v)| {
                let x = i as f64;
                v.map(|v| Rectangle::new([(x - 0.3, 0.0), (x + 0.3, v)], bar_style))
            }))?
            .label(format!(
                "Tickets resolved in the {}",
                period_noun(&self.grain).to_lowercase()
            ))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], bar_style));
        let line_style = BACKLOG_COLOUR.stroke_width(3);
        chart
            .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
            .label(format!(
                "Open at the {}'s end (backlog)",
                period_noun(&self.grain).to_lowercase()
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], line_style));
        for run in runs(&backlog) {
            chart.draw_series(run.iter().map(|&p| Circle::new(p, 3, BACKLOG_COLOUR.filled())))?;
            chart.draw_series(LineSeries::new(run, line_style))?;
        }
        if resolved.iter().all(Option::is_none) && backlog.iter().all(Option::is_none) {
            chart.draw_series(std::iter::once(Text::new(
                "No data",
                (axis.centre(), top / 2.0),
                no_data_style(),
            )))?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn weeks(n: usize) -> Vec<NaiveDate> {
        let first = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        (0..n)
            .map(|i| first + chrono::Duration::weeks(i as i64))
            .collect()
    }

    fn non_white(buffer: &[u8]) -> usize {
        buffer
            .chunks_exact(3)
            .filter(|px| px.iter().any(|&c| c < 250))
            .count()
    }

    fn sample_deployments() -> DeploymentsVsDowntime {
        DeploymentsVsDowntime {
            weeks: weeks(4),
            deployments: vec![Some(4.0), Some(7.0), None, Some(2.0)],
            downtime_minutes: vec![Some(30.0), Some(0.0), Some(120.0), None],
            ..Default::default()
        }
    }

    #[test]
    fn deployments_chart_draws_pixels_into_rgb_buffer() {
        let rgb = to_rgb(&sample_deployments()).unwrap();
        assert_eq!(rgb.len(), (WIDTH * HEIGHT * 3) as usize);
        // Bars alone cover thousands of pixels; text and axes add more.
        assert!(non_white(&rgb) > 5_000, "only {} non-white", non_white(&rgb));
    }

    #[test]
    fn data_adds_ink_beyond_the_empty_frame() {
        let empty = to_rgb(&DeploymentsVsDowntime::default()).unwrap();
        let full = to_rgb(&sample_deployments()).unwrap();
        // The empty chart still has a frame, title and "No data" note.
        assert!(non_white(&empty) > 1_000);
        assert!(non_white(&full) > non_white(&empty));
    }

    #[test]
    fn change_failure_rate_marks_small_samples_grey() {
        let chart = ChangeFailureRate {
            weeks: weeks(3),
            points: vec![
                Some(RateWeek {
                    ratio: Some(0.2),
                    n: 10,
                }),
                Some(RateWeek {
                    ratio: Some(0.5),
                    n: 2,
                }),
                None,
            ],
            ..Default::default()
        };
        let rgb = to_rgb(&chart).unwrap();
        let grey = rgb.chunks_exact(3).filter(|px| px == &[140, 140, 140]).count();
        assert!(grey > 10, "the hollow grey marker is drawn ({grey} px)");
        let svg = to_svg(&chart).unwrap();
        assert!(svg.contains("insufficient data"));
        assert!(svg.contains("2024-01-15"));
    }

    #[test]
    fn empty_charts_say_no_data() {
        let svg = to_svg(&ChangeFailureRate::default()).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("No data"));
        let svg = to_svg(&DeploymentsVsDowntime::default()).unwrap();
        assert!(svg.contains("No data"));
    }

    #[test]
    fn mismatched_lengths_do_not_panic() {
        let chart = DeploymentsVsDowntime {
            weeks: weeks(3),
            deployments: vec![Some(1.0)],
            downtime_minutes: vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(5.0)],
            ..Default::default()
        };
        to_svg(&chart).unwrap();
    }

    #[test]
    fn week_labels_thin_out_on_long_ranges() {
        let axis = WeekAxis { weeks: weeks(26) };
        let keys = axis.key_points(MAX_WEEK_LABELS);
        assert!(keys.len() <= MAX_WEEK_LABELS);
        assert_eq!(keys.first(), Some(&0.0));
        assert_eq!(axis.format_ext(&0.0), "2024-01-01");
        assert_eq!(axis.format_ext(&0.5), "");
    }

    #[test]
    fn gaps_split_lines() {
        let r = runs(&[Some(1.0), None, Some(2.0), Some(3.0), None]);
        assert_eq!(r, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }

    /// Pixels within a small distance of `colour` (bars are drawn slightly translucent).
    fn count(rgb: &[u8], colour: RGBColor) -> usize {
        let RGBColor(r, g, b) = colour;
        rgb.chunks_exact(3).filter(|px| px == &[r, g, b]).count()
    }

    #[test]
    fn kpi_targets_are_dashed_lines_with_a_legend() {
        let chart = ChangeFailureRate {
            weeks: weeks(3),
            points: vec![
                Some(RateWeek {
                    ratio: Some(0.1),
                    n: 9
                });
                3
            ],
            target: Some(0.15),
            ..Default::default()
        };
        let svg = to_svg(&chart).unwrap();
        assert!(svg.contains("KPI target: 15.0%"), "legend names the target");
        let without = to_svg(&ChangeFailureRate {
            target: None,
            ..chart
        })
        .unwrap();
        assert!(!without.contains("KPI target"));
        let with_downtime = to_svg(&DeploymentsVsDowntime {
            downtime_target: Some(60.0),
            ..sample_deployments()
        })
        .unwrap();
        assert!(with_downtime.contains("KPI target: 60 min (right axis)"));
    }

    #[test]
    fn availability_dots_are_coloured_by_their_own_slo_and_grey_when_insufficient() {
        let service = |name: &str, slo: f64, insufficient| ServiceAvailability {
            name: name.into(),
            availability: Some(0.998),
            slo,
            insufficient,
        };
        let chart = AvailabilityVsSlo {
            services: vec![service("payments", 0.999, false), service("search", 0.995, false)],
        };
        let rgb = to_rgb(&chart).unwrap();
        // The same availability misses one SLO and meets the other: one dot of each colour (plus
        // its legend swatch), the same size. A dot, not a bar from the cut axis: a 6 px disc and a
        // 5 px swatch are a few hundred pixels, a bar would be thousands.
        let (meets, misses) = (count(&rgb, MEETS_COLOUR), count(&rgb, MISSES_COLOUR));
        assert!((60..600).contains(&meets), "{meets}");
        assert!(misses.abs_diff(meets) * 5 < meets, "{misses} vs {meets}");
        // Anti-aliased text edges hit the grey a few times; a grey dot is well over 60 pixels.
        assert!(
            count(&rgb, INSUFFICIENT_COLOUR) < 40,
            "nothing insufficient, no grey dot"
        );
        let svg = to_svg(&chart).unwrap();
        assert!(svg.contains("payments") && svg.contains("search"));
        assert!(svg.contains("Below its SLO") && svg.contains("SLO target"));
        assert!(
            !svg.contains("Too few samples"),
            "no legend entry for an absent class"
        );
        assert!(svg.contains("axis starts at"), "a cut axis says so");
        assert!(non_white(&rgb) > 5_000);
        assert!(to_svg(&AvailabilityVsSlo::default()).unwrap().contains("No data"));

        // A figure on too few samples is grey, neither meeting nor missing.
        let judged_apart = AvailabilityVsSlo {
            services: vec![service("payments", 0.999, true), service("search", 0.995, false)],
        };
        let rgb = to_rgb(&judged_apart).unwrap();
        assert_eq!(count(&rgb, MISSES_COLOUR), 0, "the insufficient miss is not red");
        assert!(count(&rgb, INSUFFICIENT_COLOUR) > 60);
        assert!(
            to_svg(&judged_apart)
                .unwrap()
                .contains("Too few samples to judge")
        );
    }

    #[test]
    fn the_scatter_names_only_the_labelled_services_and_escapes_them() {
        let point = |name: &str, labelled| ServicePoint {
            name: name.into(),
            deployments: 10.0,
            downtime_minutes: 30.0,
            labelled,
        };
        let chart = ServiceScatter {
            points: vec![point("<b>checkout</b>", true), point("quiet-service", false)],
        };
        let svg = to_svg(&chart).unwrap();
        assert!(svg.contains("&lt;b&gt;checkout&lt;/b&gt;"));
        assert!(!svg.contains("<b>"));
        assert!(!svg.contains("quiet-service"));
        assert!(svg.contains("Downtime in the period (minutes)"));
        assert!(to_svg(&ServiceScatter::default()).unwrap().contains("No data"));
    }

    #[test]
    fn backlog_trend_draws_bars_and_a_line() {
        let chart = BacklogTrend {
            weeks: weeks(3),
            grain: "week".into(),
            resolved: vec![Some(4.0), Some(6.0), None],
            backlog: vec![Some(10.0), None, Some(12.0)],
        };
        let rgb = to_rgb(&chart).unwrap();
        assert!(count(&rgb, BACKLOG_COLOUR) > 20, "backlog points");
        let svg = to_svg(&chart).unwrap();
        assert!(svg.contains("Tickets (count)") && svg.contains("Weekly tickets resolved"));
    }

    #[test]
    fn long_names_are_shortened_on_axes() {
        assert_eq!(shorten("payments", 22), "payments");
        assert_eq!(shorten("abcdefghij", 5), "abcd\u{2026}");
    }
}
