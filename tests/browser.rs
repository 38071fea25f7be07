//! The steering report as a browser shows it: headless Chromium opens the file from a lake built
//! through the fake APIs, takes a screenshot and dumps the DOM. Service names shaped like attacks
//! must render as text and run nothing.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use chrono::Duration;
use tandem::cli::{RangeArgs, ReportArgs, ReportKind};
use tandem::config::Config;
use tandem::sync::SyncOptions;
use tandem_fixtures::Organisation;

use crate::common::{env, fake_options, spec, write_config};

const CHROMIUM: &str = "/usr/bin/chromium";
const WEEKS: u32 = 4;
/// Would set the page title if it ran.
const SCRIPT_NAME: &str = "<script>document.title='pwned-script'</script>";
const IMG_NAME: &str = "<img src=x onerror=\"document.title='pwned-img'\">";

/// Runs headless Chromium on `page` with `extra` arguments; returns its stdout.
fn chromium(page: &Path, profile: &Path, extra: &[String]) -> String {
    let output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1240,1754",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The RGB(A) pixels of an 8-bit, non-interlaced truecolour PNG (what Chromium writes), decoded
/// with flate2 and the five PNG row filters.
fn png_pixels(bytes: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (mut width, mut height, mut channels) = (0u32, 0u32, 0usize);
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap());
                height = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!((data[8], data[12]), (8, 0), "8-bit, not interlaced");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = width as usize * channels;
    let mut out = vec![0u8; stride * height as usize];
    for y in 0..height as usize {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels {
                out[y * stride + x - channels]
            } else {
                0
            };
            let b = if y > 0 { out[(y - 1) * stride + x] } else { 0 };
            let c = if x >= channels && y > 0 {
                out[(y - 1) * stride + x - channels]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("PNG filter {other}"),
            };
            out[y * stride + x] = line[x].wrapping_add(predicted);
        }
    }
    (width, height, channels, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steering_report_renders_in_chromium_and_runs_nothing_from_the_data() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)"
    );
    let mut org = Organisation::generate(spec(WEEKS)).unwrap();
    org.services[0].name = SCRIPT_NAME.to_owned();
    org.services[1].name = IMG_NAME.to_owned();
    let org = Arc::new(org);
    let servers = tandem_fixtures::start(org.clone(), fake_options()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&write_config(dir.path(), &org, &servers)).unwrap();
    let ctx = tandem::commands::Context {
        env: env(),
        progress: false,
    };
    tandem::commands::sync::sync_into_store(&config, &ctx.env, &SyncOptions::default())
        .await
        .unwrap();

    let out = dir.path().join("reports");
    let args = ReportArgs {
        kind: ReportKind::Steering,
        range: RangeArgs {
            weeks: Some(WEEKS),
            until: Some(org.spec.start + Duration::weeks(i64::from(WEEKS))),
            ..RangeArgs::default()
        },
        out: Some(out.clone()),
        as_of: None,
    };
    let html_path: PathBuf = tokio::task::spawn_blocking(move || {
        tandem::commands::steering::run(&args, &config, &ctx).unwrap();
        let run = tandem::report::archive::latest(&out, "steering", None).expect("a steering run");
        assert!(out.join("index.html").exists(), "the history page");
        run.dir.join(run.meta.main)
    })
    .await
    .unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains("&lt;script&gt;document.title="),
        "the service is on the page"
    );

    let profile = dir.path().join("chromium-profile");
    let shot = dir.path().join("shot.png");
    chromium(
        &html_path,
        &profile,
        &[format!("--screenshot={}", shot.display())],
    );
    let (width, height, channels, pixels) = png_pixels(&std::fs::read(&shot).unwrap());
    assert_eq!((width, height), (1240, 1754));
    let colours: std::collections::BTreeSet<&[u8]> = pixels.chunks_exact(channels).map(|p| &p[..3]).collect();
    let inked = pixels
        .chunks_exact(channels)
        .filter(|p| p[..3].iter().any(|&c| c < 200))
        .count();
    assert!(
        colours.len() > 50,
        "a rendered page has many colours, not {}",
        colours.len()
    );
    assert!(
        inked > (width * height) as usize / 100,
        "text and charts cover more than 1% of the first screen ({inked} px)"
    );
    // The headline chart drew its deployment bars: Okabe–Ito blue (0, 114, 178) at 75% over
    // white is (64, 149, 197). A page whose charts failed has text but none of this blue.
    let deploy_blue = pixels
        .chunks_exact(channels)
        .filter(|p| {
            let d = |a: u8, b: u8| i32::from(a).abs_diff(i32::from(b));
            d(p[0], 64) + d(p[1], 149) + d(p[2], 197) <= 30
        })
        .count();
    assert!(
        deploy_blue > 10_000,
        "the headline chart's deployment bars are on the first screen ({deploy_blue} px)"
    );

    let dom = chromium(&html_path, &profile, &["--dump-dom".to_owned()]);
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .expect("a title");
    assert!(
        title.starts_with("Acme (simulated) \u{2014} steering committee report, 2026-W32"),
        "{title}"
    );
    assert!(!dom.contains("pwned-script</title>") && !dom.contains("<title>pwned"));
    // The names are text in the DOM, not elements.
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned-script'&lt;/script&gt;"),
        "script name as text"
    );
    assert!(
        dom.contains("&lt;img src=x onerror=\"document.title='pwned-img'\"&gt;"),
        "img name as text"
    );
    assert!(!dom.contains("<script"), "no script element");
    assert!(!dom.contains("<img"), "no img element");
    // DORA 2025's per-service table is laid out, the attack-named services in it as text.
    let delivery = dom
        .split("<table class=\"delivery\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the throughput and instability table");
    assert!(delivery.contains(">Throughput</th>") && delivery.contains(">Instability</th>"));
    assert!(delivery.contains("&lt;script&gt;document.title='pwned-script'&lt;/script&gt;"));
}
