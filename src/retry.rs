//! How a durable queue spaces its attempts: the local delivery queue and
//! the outbound queue share one policy shape.

use crate::config::{DeliveryConfig, OutboundConfig};
use std::time::Duration;

/// How retries are spaced.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl From<&DeliveryConfig> for RetryPolicy {
    fn from(c: &DeliveryConfig) -> Self {
        RetryPolicy {
            first: c.retry_interval.0,
            max: c.retry_max_interval.0,
            give_up_after: c.retry_for.0,
        }
    }
}

impl From<&OutboundConfig> for RetryPolicy {
    fn from(c: &OutboundConfig) -> Self {
        RetryPolicy {
            first: c.retry_interval.0,
            max: c.retry_max_interval.0,
            give_up_after: c.retry_for.0,
        }
    }
}

impl RetryPolicy {
    /// Wait before the attempt after `attempts` failed ones.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let shift = attempts.clamp(1, 30) as u32 - 1;
        self.first.saturating_mul(1u32 << shift).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let p = RetryPolicy {
            first: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(86400),
        };
        assert_eq!(p.backoff(1), Duration::from_secs(60));
        assert_eq!(p.backoff(2), Duration::from_secs(120));
        assert_eq!(p.backoff(4), Duration::from_secs(480));
        assert_eq!(p.backoff(20), Duration::from_secs(3600));
    }
}
