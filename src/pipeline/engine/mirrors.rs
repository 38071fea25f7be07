//! Which incidents count and which cause references they carry (`[metrics] incident_sources`,
//! `cause_sources`, `mirror_match`): the systems of record count incidents; any allowed system may
//! supply cause references, also through a mirror — the same outage recorded in another system
//! (a ServiceNow or Jira copy of a PagerDuty incident) — whose references go to the incident it
//! mirrors. A mirror is never counted itself: its source is not an incident source.
//!
//! Plain Rust over the collected incident keys and references: matching is by exact keys and by
//! sorted start times. It must not compute metrics.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;

use super::super::{MirrorMatch, Options};

/// One incident's matching keys, collected from the incidents table.
#[derive(Debug)]
struct Keyed {
    id: String,
    source: String,
    number: Option<i64>,
    service: Option<String>,
    started: i64,
    correlation: Option<String>,
    refs: Vec<String>,
}

impl Keyed {
    /// The vendor's id of the incident: the primary key without its `{source}:` prefix.
    fn vendor_id(&self) -> &str {
        self.id
            .strip_prefix(self.source.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
            .unwrap_or(&self.id)
    }

    /// The names another system's correlation field may give this incident, lower-cased: its
    /// vendor id and its number.
    fn names(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.vendor_id().to_ascii_lowercase()).chain(self.number.map(|n| n.to_string()))
    }
}

/// Whether `options` need the incidents' cause references rewritten: some source may not supply
/// them, or mirrors can lend theirs to the counted incidents.
pub(in crate::pipeline) fn needed(opts: &Options) -> bool {
    !opts.cause_sources.is_empty() || (!opts.incident_sources.is_empty() && !opts.mirror_match.is_empty())
}

/// The counted incidents (`counted`, already filtered to the incident sources) with `cause_refs`
/// replaced by the references they carry: their own when their source is a cause source, then
/// those of the mirrors matched to them ([`mirror_of`]) from the other incidents of `all`.
pub(in crate::pipeline) fn with_causes(
    all: LazyFrame,
    counted: LazyFrame,
    opts: &Options,
) -> PolarsResult<LazyFrame> {
    let frame = all
        .select([
            col("id"),
            col("source"),
            col("number"),
            col("service"),
            col("started_at"),
            col("correlation_id"),
            col("cause_refs"),
        ])
        .collect()?;
    let (id, source, number, service, started, correlation, refs) = (
        frame.column("id")?.str()?,
        frame.column("source")?.str()?,
        frame.column("number")?.i64()?,
        frame.column("service")?.str()?,
        frame.column("started_at")?.i64()?,
        frame.column("correlation_id")?.str()?,
        frame.column("cause_refs")?.list()?,
    );
    let mut incidents = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        let (Some(id), Some(source), Some(started)) = (id.get(i), source.get(i), started.get(i)) else {
            continue;
        };
        let refs = refs
            .get_as_series(i)
            .and_then(|list| {
                list.str()
                    .ok()
                    .map(|r| r.iter().flatten().map(str::to_owned).collect())
            })
            .unwrap_or_default();
        incidents.push(Keyed {
            id: id.to_owned(),
            source: source.to_owned(),
            number: number.get(i),
            service: service.get(i).map(str::to_owned),
            started,
            correlation: correlation
                .get(i)
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            refs,
        });
    }
    let chosen = |sources: &[String], source: &str| sources.is_empty() || sources.iter().any(|s| s == source);
    let is_counted = |k: &Keyed| chosen(&opts.incident_sources, &k.source);
    let supplies_causes = |k: &Keyed| chosen(&opts.cause_sources, &k.source);

    let (counted_incidents, others): (Vec<&Keyed>, Vec<&Keyed>) =
        incidents.iter().partition(|k| is_counted(k));
    let mut carried: HashMap<&str, Vec<String>> = counted_incidents
        .iter()
        .map(|k| {
            let own = if supplies_causes(k) {
                k.refs.clone()
            } else {
                Vec::new()
            };
            (k.id.as_str(), own)
        })
        .collect();
    // Mirrors exist only where some systems are not systems of record.
    if !opts.incident_sources.is_empty() {
        let index = Index::new(&counted_incidents);
        let tolerance = opts.mirror_start_tolerance.num_milliseconds().max(0);
        for mirror in others.iter().filter(|k| supplies_causes(k) && !k.refs.is_empty()) {
            let Some(of) = mirror_of(mirror, &index, &opts.mirror_match, tolerance) else {
                continue;
            };
            if let Some(list) = carried.get_mut(of) {
                for r in &mirror.refs {
                    if !list.contains(r) {
                        list.push(r.clone());
                    }
                }
            }
        }
    }

    let mut ids = Vec::with_capacity(carried.len());
    let mut builder = ListStringChunkedBuilder::new(
        "carried_refs".into(),
        carried.len(),
        carried.values().map(Vec::len).sum(),
    );
    for (id, refs) in &carried {
        ids.push(*id);
        builder.append_values_iter(refs.iter().map(String::as_str));
    }
    let refs = DataFrame::new_infer_height(vec![
        Column::new("carried_id".into(), ids),
        builder.finish().into_column(),
    ])?
    .lazy();
    Ok(counted
        .left_join(refs, col("id"), col("carried_id"))
        .with_columns([col("carried_refs").alias("cause_refs")]))
}

/// The counted incidents indexed by the keys mirrors are matched on.
struct Index<'a> {
    /// Lower-cased vendor id or number → incidents with it.
    by_name: HashMap<String, Vec<&'a Keyed>>,
    /// Lower-cased correlation key → incidents carrying it.
    by_correlation: HashMap<String, Vec<&'a Keyed>>,
    /// `(service, number)` → incidents.
    by_number: HashMap<(&'a str, i64), Vec<&'a Keyed>>,
    /// Service → incidents in start order.
    by_service: HashMap<&'a str, Vec<&'a Keyed>>,
}

impl<'a> Index<'a> {
    fn new(counted: &[&'a Keyed]) -> Self {
        let mut index = Self {
            by_name: HashMap::new(),
            by_correlation: HashMap::new(),
            by_number: HashMap::new(),
            by_service: HashMap::new(),
        };
        for &k in counted {
            for name in k.names() {
                index.by_name.entry(name).or_default().push(k);
            }
            if let Some(c) = &k.correlation {
                index
                    .by_correlation
                    .entry(c.to_ascii_lowercase())
                    .or_default()
                    .push(k);
            }
            if let Some(service) = k.service.as_deref() {
                if let Some(number) = k.number {
                    index.by_number.entry((service, number)).or_default().push(k);
                }
                index.by_service.entry(service).or_default().push(k);
            }
        }
        for list in index.by_service.values_mut() {
            list.sort_by(|a, b| (a.started, &a.id).cmp(&(b.started, &b.id)));
        }
        index
    }
}

/// The counted incident `mirror` mirrors, by the first rule of `rules` that finds one; of several
/// candidates, the one whose start is nearest the mirror's (ties: the smaller id):
/// - `correlation`: the mirror's correlation key names the incident (its vendor id or number), the
///   incident's names the mirror, or both carry the same key;
/// - `number`: the same service and incident number;
/// - `start`: the same service, started within `tolerance_ms` of the mirror.
fn mirror_of<'a>(
    mirror: &Keyed,
    index: &Index<'a>,
    rules: &[MirrorMatch],
    tolerance_ms: i64,
) -> Option<&'a str> {
    let nearest = |candidates: &mut dyn Iterator<Item = &'a Keyed>| {
        candidates
            .filter(|k| k.source != mirror.source)
            .min_by(|a, b| {
                ((a.started - mirror.started).abs(), &a.id).cmp(&((b.started - mirror.started).abs(), &b.id))
            })
            .map(|k| k.id.as_str())
    };
    rules.iter().find_map(|rule| match rule {
        MirrorMatch::Correlation => {
            let mut seen = HashSet::new();
            let own = mirror.correlation.as_deref().map(str::to_ascii_lowercase);
            let named = own.iter().flat_map(|c| index.by_name.get(c)).flatten();
            let naming = mirror
                .names()
                .flat_map(|n| index.by_correlation.get(&n))
                .flatten();
            let shared = own.iter().flat_map(|c| index.by_correlation.get(c)).flatten();
            let mut all = named
                .chain(naming)
                .chain(shared)
                .copied()
                .filter(|k| seen.insert(k.id.as_str()));
            nearest(&mut all)
        }
        MirrorMatch::Number => {
            let key = (mirror.service.as_deref()?, mirror.number?);
            nearest(&mut index.by_number.get(&key)?.iter().copied())
        }
        MirrorMatch::Start => {
            let list = index.by_service.get(mirror.service.as_deref()?)?;
            let from = list.partition_point(|k| k.started < mirror.started.saturating_sub(tolerance_ms));
            let until = list.partition_point(|k| k.started <= mirror.started.saturating_add(tolerance_ms));
            nearest(&mut list.get(from..until)?.iter().copied())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(id: &str, number: Option<i64>, service: &str, started: i64, correlation: Option<&str>) -> Keyed {
        Keyed {
            id: id.into(),
            source: id.split(':').next().unwrap_or_default().into(),
            number,
            service: Some(service.into()),
            started,
            correlation: correlation.map(str::to_owned),
            refs: vec!["cause".into()],
        }
    }

    #[test]
    fn mirrors_are_matched_by_correlation_either_way_then_number_then_start_nearest_first() {
        let counted = [
            keyed("pd:PA", Some(7), "api", 1_000, None),
            keyed("pd:PB", Some(8), "api", 2_000, Some("INC0001")),
            keyed("pd:PC", Some(9), "web", 3_000, Some("shared-key")),
            keyed("pd:PD", Some(10), "api", 2_400, None),
        ];
        let refs: Vec<&Keyed> = counted.iter().collect();
        let index = Index::new(&refs);
        let all = [MirrorMatch::Correlation, MirrorMatch::Number, MirrorMatch::Start];
        let of = |m: &Keyed, rules: &[MirrorMatch]| mirror_of(m, &index, rules, 500);
        // The mirror's correlation names PA by vendor id (any case) or by number.
        assert_eq!(of(&keyed("sn:1", None, "db", 0, Some("pa")), &all), Some("pd:PA"));
        assert_eq!(of(&keyed("sn:2", None, "db", 0, Some("8")), &all), Some("pd:PB"));
        // PB's correlation names the mirror by its vendor id.
        assert_eq!(of(&keyed("sn:INC0001", None, "db", 0, None), &all), Some("pd:PB"));
        // Both carry the same key.
        assert_eq!(
            of(&keyed("sn:3", None, "db", 0, Some("SHARED-KEY")), &all),
            Some("pd:PC")
        );
        // Same service and number.
        assert_eq!(
            of(&keyed("sn:4", Some(7), "api", 9_999, None), &all),
            Some("pd:PA")
        );
        assert_eq!(of(&keyed("sn:4", Some(7), "web", 9_999, None), &all), None);
        // Within 500 ms of two api incidents: the nearer, PD (at 2 400) for a start at 2 300.
        assert_eq!(of(&keyed("sn:5", None, "api", 2_300, None), &all), Some("pd:PD"));
        assert_eq!(
            of(&keyed("sn:5", None, "api", 2_300, None), &[MirrorMatch::Number]),
            None
        );
        // The rules in the order given: correlation names PA, start would pick PD.
        assert_eq!(
            of(
                &keyed("sn:6", None, "api", 2_300, Some("PA")),
                &[MirrorMatch::Start, MirrorMatch::Correlation]
            ),
            Some("pd:PD")
        );
        // An incident of the same source is no mirror.
        assert_eq!(of(&keyed("pd:PX", None, "api", 1_000, Some("PA")), &all), None);
    }
}
