//! Human-readable durations such as `1 minute`, `30s` or `5m`.

use std::{fmt, str::FromStr, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_with::{DeserializeFromStr, SerializeDisplay};

/// A duration written the way people write it: `1 minute`, `30s`, `5m`, `1h 30m`.
///
/// Parsing is done by `humantime`; a bare number without a unit is refused so that
/// `60` is never silently read as seconds or minutes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, SerializeDisplay, DeserializeFromStr,
)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Builds a duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The standard library duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = humantime::parse_duration(s.trim()).map_err(|e| {
            format!("'{s}' is not a duration ({e}); expected e.g. '1 minute', '30s', '5m'")
        })?;
        if parsed.is_zero() {
            return Err(format!("'{s}' is zero; expected a positive duration"));
        }
        Ok(Self(parsed))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

/// The durations `humantime` reads: whole numbers with units, e.g. `30s`, `1h 30m`,
/// `2 minutes` (what the CRD admits; the parser refuses the rest anyway).
pub const DURATION_PATTERN: &str = "^\\s*([0-9]+\\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\\s*)+$";

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration with units, e.g. '1 minute', '30s', '5m', '1h 30m'.",
            "pattern": DURATION_PATTERN,
            "x-kubernetes-validations": [{
                "rule": "!self.matches('^\\\\s*(0+\\\\s*[^0-9\\\\s]+\\\\s*)+$')",
                "message": "must be a positive duration",
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_write() {
        for (text, secs) in [("1 minute", 60), ("30s", 30), ("5m", 300), ("1h 30m", 5400)] {
            assert_eq!(
                text.parse::<HumanDuration>().unwrap().get().as_secs(),
                secs,
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_unitless_and_zero() {
        assert!(
            "60".parse::<HumanDuration>()
                .unwrap_err()
                .contains("expected e.g.")
        );
        assert!("0s".parse::<HumanDuration>().unwrap_err().contains("zero"));
    }

    #[test]
    fn round_trips_through_display() {
        let d: HumanDuration = "1m 30s".parse().unwrap();
        assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
    }
}
