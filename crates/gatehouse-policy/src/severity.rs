//! How bad a vulnerability is, in npm's words (`npm audit` uses these four levels).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Moderate,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Low, Severity::Moderate, Severity::High, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Moderate => "moderate",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// CVSS v3/v4 qualitative rating of a base score. A score of 0 ("none") counts as low:
    /// an advisory exists, so it is at least that.
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Moderate
        } else {
            Severity::Low
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown severity {0:?}: expected \"low\", \"moderate\", \"high\" or \"critical\"")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// GHSA writes `MODERATE`, CVSS and Snyk say `medium`: both mean moderate.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Severity::Low),
            "moderate" | "medium" => Ok(Severity::Moderate),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(UnknownSeverity(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_map_to_the_cvss_ratings() {
        assert_eq!(Severity::from_score(9.8), Severity::Critical);
        assert_eq!(Severity::from_score(7.2), Severity::High);
        assert_eq!(Severity::from_score(6.9), Severity::Moderate);
        assert_eq!(Severity::from_score(0.0), Severity::Low);
    }

    #[test]
    fn ghsa_and_cvss_spellings_parse() {
        assert_eq!("MODERATE".parse::<Severity>().ok(), Some(Severity::Moderate));
        assert_eq!("medium".parse::<Severity>().ok(), Some(Severity::Moderate));
        assert!("severe".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High);
    }
}
