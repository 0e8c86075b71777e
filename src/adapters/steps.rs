//! Weighted steps inside a stage (`steps = [5, 25, 50, 100]`): the share arithmetic every
//! adapter uses, and what a step is computed from.
//!
//! A step gives the new version `weight` percent of a region: kubernetes runs that share of the
//! replicas in a canary Deployment (or sends that share of the route's traffic to it), fly
//! updates that share of the region's machines, exec passes `{weight}` to its commands. The
//! share of `n` instances is `ceil(n × weight / 100)`, and at least 1: a 5 % step of 3 replicas
//! still runs the new version somewhere, or its gates would judge nothing.

use serde_json::Value;

/// How many of `total` instances get `weight` percent: `ceil(total × weight / 100)`, at least
/// 1, at most `total` (when there is any).
pub fn share_of(total: u32, weight: u8) -> u32 {
    let weight = u32::from(weight.min(100));
    let share = (total * weight).div_ceil(100);
    share.max(1).min(total.max(1))
}

/// What a step's commands are computed from, read from the platform before each step (and
/// before a stepped region's rollback), so the argv is exact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepBasis {
    /// kubernetes: the replicas the region serves with (stable plus canary, so a step never
    /// changes the total); `None` when it could not be read (the dry run shows a placeholder).
    pub replicas: Option<u32>,
    /// kubernetes: the stable Deployment, the canary's template.
    pub stable: Option<Value>,
    /// kubernetes: the canary Deployment, when it exists.
    pub canary: Option<Value>,
    /// Whether the platform was read (the dry run may show a step it could not read).
    pub read: bool,
    /// kubernetes, `traffic = "gateway-api"`: the HTTPRoute as read.
    pub route: Option<Value>,
    /// fly: the region's machine ids, sorted (the first `share` are updated at a step).
    pub machines: Vec<String>,
}

impl StepBasis {
    /// What a later step will read, as the dry run foresees it from this read before the first:
    /// the canary the first step creates exists by then (same total of replicas, same machines).
    pub fn after_first_step(mut self) -> Self {
        if self.read && self.canary.is_none() && self.stable.is_some() {
            self.canary = Some(Value::Null);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_rounds_up_and_is_at_least_one() {
        assert_eq!(share_of(4, 25), 1);
        assert_eq!(share_of(4, 50), 2);
        assert_eq!(share_of(4, 51), 3, "ceil");
        assert_eq!(share_of(3, 5), 1, "at least one");
        assert_eq!(share_of(10, 5), 1);
        assert_eq!(share_of(10, 25), 3, "2.5 rounds up");
        assert_eq!(share_of(3, 100), 3);
        assert_eq!(share_of(1, 5), 1);
        assert_eq!(
            share_of(0, 50),
            1,
            "nothing to share: one instance still runs it"
        );
        assert_eq!(share_of(200, 99), 198);
    }
}
