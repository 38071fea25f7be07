//! DORA performance tiers, kept as data: named threshold sets (`dora-2023`, the monotonic set
//! Apache DevLake uses, is the default) and the DORA 2024 cluster values shown beside a team's
//! numbers for reference only (they are not monotonic, so nothing is bucketed on them).
//!
//! Pure functions: no polars, no I/O. A tier is only given where the sample has `n ≥ 5`.

use super::MIN_SAMPLE;

/// A performance tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Elite performers.
    Elite,
    /// High performers.
    High,
    /// Medium performers.
    Medium,
    /// Low performers.
    Low,
}

impl Tier {
    /// Lower-case name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Elite => "elite",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// What a tier is judged on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TierInput {
    /// Lead time for changes, in hours (median).
    LeadTimeHours(f64),
    /// Deployment frequency: the median over all weeks of the days with a deployment (`w`), and
    /// the median over all months of the same (`m`).
    DeployDays {
        /// Median deploy-days per week, empty weeks included.
        weekly: f64,
        /// Median deploy-days per month, empty months included.
        monthly: f64,
    },
    /// Change failure rate, 0..=1.
    ChangeFailureRate(f64),
    /// Failed deployment recovery time, in hours (median).
    RecoveryHours(f64),
}

/// One named threshold set. Each entry is the bound to be *better than* for that tier, elite
/// first; what beats none of them is low.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Name selected in the config.
    pub name: &'static str,
    /// Lead time: strictly below these hours for elite, high, medium.
    pub lead_time_hours: [f64; 3],
    /// Deploy-days: `w ≥ 5` elite, `w ≥ 1` high, `m ≥ 1` medium (weekly, weekly, monthly).
    pub deploy_days: [f64; 3],
    /// Change failure rate: at most these for elite, high, medium.
    pub change_failure_rate: [f64; 3],
    /// Recovery: strictly below these hours for elite, high, medium.
    pub recovery_hours: [f64; 3],
}

/// Every threshold set tandem knows, by name.
pub const THRESHOLDS: &[Thresholds] = &[Thresholds {
    name: "dora-2023",
    lead_time_hours: [24.0, 24.0 * 7.0, 24.0 * 30.0],
    deploy_days: [5.0, 1.0, 1.0],
    change_failure_rate: [0.05, 0.10, 0.15],
    recovery_hours: [1.0, 24.0, 24.0 * 7.0],
}];

/// The default threshold set.
pub const DEFAULT_THRESHOLDS: &str = "dora-2023";

/// Looks a threshold set up by name.
pub fn thresholds(name: &str) -> Option<&'static Thresholds> {
    THRESHOLDS.iter().find(|t| t.name == name)
}

impl Thresholds {
    /// The tier of `input`, or `None` when the sample is too small (`n < 5`) or the value is not
    /// a number.
    pub fn tier(&self, input: TierInput, n: i64) -> Option<Tier> {
        if n < MIN_SAMPLE {
            return None;
        }
        let below = |v: f64, bounds: [f64; 3]| {
            if !v.is_finite() {
                return None;
            }
            Some(match bounds.iter().position(|b| v < *b) {
                Some(0) => Tier::Elite,
                Some(1) => Tier::High,
                Some(2) => Tier::Medium,
                _ => Tier::Low,
            })
        };
        match input {
            TierInput::LeadTimeHours(h) => below(h, self.lead_time_hours),
            TierInput::RecoveryHours(h) => below(h, self.recovery_hours),
            TierInput::ChangeFailureRate(r) => {
                if !r.is_finite() {
                    return None;
                }
                Some(match self.change_failure_rate.iter().position(|b| r <= *b) {
                    Some(0) => Tier::Elite,
                    Some(1) => Tier::High,
                    Some(2) => Tier::Medium,
                    _ => Tier::Low,
                })
            }
            TierInput::DeployDays { weekly, monthly } => {
                let [elite, high, medium] = self.deploy_days;
                Some(if weekly >= elite {
                    Tier::Elite
                } else if weekly >= high {
                    Tier::High
                } else if monthly >= medium {
                    Tier::Medium
                } else {
                    Tier::Low
                })
            }
        }
    }
}

/// One DORA 2024 cluster, for reference beside a team's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cluster {
    /// Cluster name.
    pub name: &'static str,
    /// Lead time for changes.
    pub lead_time: &'static str,
    /// Deployment frequency.
    pub deployment_frequency: &'static str,
    /// Change failure rate.
    pub change_failure_rate: &'static str,
    /// Failed deployment recovery time.
    pub recovery_time: &'static str,
}

/// The DORA 2024 report's clusters (State of DevOps 2024).
pub const DORA_2024_CLUSTERS: [Cluster; 4] = [
    Cluster {
        name: "elite",
        lead_time: "less than one day",
        deployment_frequency: "on demand (several a day)",
        change_failure_rate: "about 5%",
        recovery_time: "less than one hour",
    },
    Cluster {
        name: "high",
        lead_time: "one day to one week",
        deployment_frequency: "daily to weekly",
        change_failure_rate: "about 20%",
        recovery_time: "less than one day",
    },
    Cluster {
        name: "medium",
        lead_time: "one week to one month",
        deployment_frequency: "weekly to monthly",
        change_failure_rate: "about 10%",
        recovery_time: "less than one day",
    },
    Cluster {
        name: "low",
        lead_time: "one to six months",
        deployment_frequency: "monthly to every six months",
        change_failure_rate: "about 40%",
        recovery_time: "one week to one month",
    },
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t() -> &'static Thresholds {
        thresholds(DEFAULT_THRESHOLDS).unwrap()
    }

    #[test]
    fn lead_time_bounds_are_strict() {
        assert_eq!(t().tier(TierInput::LeadTimeHours(23.9), 5), Some(Tier::Elite));
        assert_eq!(t().tier(TierInput::LeadTimeHours(24.0), 5), Some(Tier::High));
        assert_eq!(t().tier(TierInput::LeadTimeHours(168.0), 5), Some(Tier::Medium));
        assert_eq!(t().tier(TierInput::LeadTimeHours(720.0), 5), Some(Tier::Low));
    }

    #[test]
    fn change_failure_rate_bounds_are_inclusive() {
        assert_eq!(t().tier(TierInput::ChangeFailureRate(0.05), 9), Some(Tier::Elite));
        assert_eq!(
            t().tier(TierInput::ChangeFailureRate(0.0501), 9),
            Some(Tier::High)
        );
        assert_eq!(
            t().tier(TierInput::ChangeFailureRate(0.15), 9),
            Some(Tier::Medium)
        );
        assert_eq!(t().tier(TierInput::ChangeFailureRate(0.16), 9), Some(Tier::Low));
    }

    #[test]
    fn deploy_days_use_weeks_then_months() {
        let tier = |weekly, monthly| t().tier(TierInput::DeployDays { weekly, monthly }, 20);
        assert_eq!(tier(5.0, 20.0), Some(Tier::Elite));
        assert_eq!(tier(1.0, 4.0), Some(Tier::High));
        assert_eq!(
            tier(0.0, 1.0),
            Some(Tier::Medium),
            "a median week without deploys, monthly ones"
        );
        assert_eq!(tier(0.0, 0.0), Some(Tier::Low));
    }

    #[test]
    fn recovery_time_and_small_samples() {
        assert_eq!(t().tier(TierInput::RecoveryHours(0.5), 5), Some(Tier::Elite));
        assert_eq!(t().tier(TierInput::RecoveryHours(200.0), 5), Some(Tier::Low));
        assert_eq!(t().tier(TierInput::RecoveryHours(0.5), 4), None, "n < 5: no tier");
        assert_eq!(t().tier(TierInput::LeadTimeHours(f64::NAN), 9), None);
        assert!(thresholds("dora-1999").is_none());
    }
}
