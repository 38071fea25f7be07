//! The length of a union of time intervals, clipped to a period: downtime is the time during
//! which at least one outage was open, so overlapping incidents are merged, never summed.
//!
//! Plain Rust on integers (milliseconds): a handful of intervals per period does not need polars,
//! and doing it there would cost extra polars features. It must not know what an incident is.

/// Total length of the union of the half-open intervals `[start, end)`, each clipped to
/// `[from, to)`. Empty or inverted intervals count for nothing.
pub(crate) fn union_length(intervals: impl IntoIterator<Item = (i64, i64)>, from: i64, to: i64) -> i64 {
    let mut clipped: Vec<(i64, i64)> = intervals
        .into_iter()
        .map(|(start, end)| (start.max(from), end.min(to)))
        .filter(|(start, end)| start < end)
        .collect();
    clipped.sort_unstable();

    let mut total = 0;
    let mut current: Option<(i64, i64)> = None;
    for (start, end) in clipped {
        current = match current {
            // Touching intervals merge too; it changes nothing in the total.
            Some((open, close)) if start <= close => Some((open, close.max(end))),
            Some((open, close)) => {
                total += close - open;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((open, close)) = current {
        total += close - open;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::union_length;

    #[test]
    fn nothing_is_zero() {
        assert_eq!(union_length([], 0, 100), 0);
    }

    #[test]
    fn disjoint_intervals_add_up() {
        assert_eq!(union_length([(10, 20), (30, 45)], 0, 100), 25);
    }

    #[test]
    fn overlaps_are_merged_not_summed() {
        // [10, 30) ∪ [20, 40) ∪ [25, 26) = [10, 40).
        assert_eq!(union_length([(20, 40), (10, 30), (25, 26)], 0, 100), 30);
    }

    #[test]
    fn touching_intervals_do_not_double_count() {
        assert_eq!(union_length([(10, 20), (20, 30)], 0, 100), 20);
    }

    #[test]
    fn intervals_are_clipped_to_the_period() {
        // [−50, 10) → [0, 10); [90, 500) → [90, 100); [200, 300) is outside.
        assert_eq!(union_length([(-50, 10), (90, 500), (200, 300)], 0, 100), 20);
    }

    #[test]
    fn an_open_interval_runs_to_the_period_end() {
        assert_eq!(union_length([(60, i64::MAX)], 0, 100), 40);
    }

    #[test]
    fn empty_and_inverted_intervals_count_for_nothing() {
        assert_eq!(union_length([(50, 50), (70, 60)], 0, 100), 0);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::union_length;

    proptest! {
        #[test]
        fn a_union_is_at_most_the_period_and_the_sum_and_at_least_the_longest(
            intervals in prop::collection::vec((0i64..10_000, 0i64..5_000), 0..12),
            from in 0i64..5_000,
            span in 1i64..10_000,
        ) {
            let to = from + span;
            let intervals: Vec<(i64, i64)> = intervals.into_iter().map(|(s, len)| (s, s + len)).collect();
            let union = union_length(intervals.iter().copied(), from, to);
            let clipped = |(s, e): (i64, i64)| (e.min(to) - s.max(from)).max(0);
            let sum: i64 = intervals.iter().copied().map(clipped).sum();
            let longest = intervals.iter().copied().map(clipped).max().unwrap_or(0);
            prop_assert!(union <= to - from);
            prop_assert!(union <= sum);
            prop_assert!(union >= longest);
            // Order and duplicates change nothing.
            let mut shuffled: Vec<(i64, i64)> = intervals.iter().rev().copied().collect();
            shuffled.extend(intervals.iter().copied());
            prop_assert_eq!(union_length(shuffled, from, to), union);
        }
    }
}
