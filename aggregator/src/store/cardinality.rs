//! Fleet-wide caps on distinct names (README "Store layout", `[store]` keys `max_agents`,
//! `max_metric_names`, `max_label_keys`): the distinct metric names and label keys the store
//! holds or buffers, rebuilt by [`super::files::recover`] from the committed files. A frame that
//! would add an agent, metric name or label key beyond its cap is refused
//! ([`super::CommitStatus::CardinalityLimit`], acked REJECTED / CARDINALITY_LIMIT, counted);
//! frames naming only known ones keep being stored.
//!
//! Agents are counted by the de-duplication index (and the buffer's), not here. A name counts
//! from the moment a frame carrying it is buffered, even if that frame's commit then fails (its
//! agent resends it), so a cap is never exceeded in the store.

use fleetset_proto::Snapshot;
use std::collections::HashSet;

/// The caps, from `[store]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Distinct agent ids.
    pub agents: usize,
    /// Distinct metric names.
    pub metric_names: usize,
    /// Distinct label keys.
    pub label_keys: usize,
}

/// Distinct metric names and label keys stored or buffered (memory: the names, each at most
/// the contract's name length, at most `max_metric_names + max_label_keys` of them).
#[derive(Debug, Default, Clone)]
pub struct Names {
    metrics: HashSet<String>,
    label_keys: HashSet<String>,
}

impl Names {
    /// Records metric `name`.
    pub fn add_metric(&mut self, name: &str) {
        if !self.metrics.contains(name) {
            self.metrics.insert(name.to_string());
        }
    }

    /// Records label `key`.
    pub fn add_label_key(&mut self, key: &str) {
        if !self.label_keys.contains(key) {
            self.label_keys.insert(key.to_string());
        }
    }

    /// Distinct metric names known.
    pub fn metrics(&self) -> usize {
        self.metrics.len()
    }

    /// Distinct label keys known.
    pub fn label_keys(&self) -> usize {
        self.label_keys.len()
    }

    /// Why `snap` would exceed `caps` (`known_agents` agents are known, and `new_agent` says
    /// whether `snap`'s agent is not one of them), or `Ok` when it fits. Changes nothing.
    pub fn check(
        &self,
        caps: Caps,
        snap: &Snapshot,
        known_agents: usize,
        new_agent: bool,
    ) -> Result<(), String> {
        if new_agent && known_agents >= caps.agents {
            return Err(format!(
                "agent {} would exceed store.max_agents = {} distinct agents",
                snap.agent_id, caps.agents
            ));
        }
        // The first new name (in name order) beyond the cap, if any.
        let over = |known: &HashSet<String>, names: Vec<&String>, cap: usize| {
            let new: std::collections::BTreeSet<&String> =
                names.into_iter().filter(|n| !known.contains(*n)).collect();
            let room = cap.saturating_sub(known.len());
            new.into_iter().nth(room).cloned()
        };
        if let Some(m) = over(
            &self.metrics,
            snap.stats.keys().chain(snap.data.keys()).collect(),
            caps.metric_names,
        ) {
            return Err(format!(
                "metric {m} would exceed store.max_metric_names = {} distinct metrics",
                caps.metric_names
            ));
        }
        if let Some(k) = over(
            &self.label_keys,
            snap.host.labels.keys().collect(),
            caps.label_keys,
        ) {
            return Err(format!(
                "label key {k} would exceed store.max_label_keys = {} distinct label keys",
                caps.label_keys
            ));
        }
        Ok(())
    }

    /// Records every metric name and label key of `snap`.
    pub fn add(&mut self, snap: &Snapshot) {
        snap.stats
            .keys()
            .chain(snap.data.keys())
            .for_each(|m| self.add_metric(m));
        snap.host.labels.keys().for_each(|k| self.add_label_key(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(agent: &str, metrics: &[&str], labels: &[&str]) -> Snapshot {
        let mut s = Snapshot {
            agent_id: agent.into(),
            ..Default::default()
        };
        for m in metrics {
            s.data.insert((*m).into(), Vec::new());
            s.stats.insert((*m).into(), Default::default());
        }
        for k in labels {
            s.host.labels.insert((*k).into(), "v".into());
        }
        s
    }

    #[test]
    fn new_names_beyond_a_cap_are_refused_and_known_ones_pass() {
        let caps = Caps {
            agents: 2,
            metric_names: 2,
            label_keys: 1,
        };
        let mut n = Names::default();
        let a = snap("a", &["m1", "m2"], &["site"]);
        assert_eq!(n.check(caps, &a, 0, true), Ok(()));
        n.add(&a);
        assert_eq!((n.metrics(), n.label_keys()), (2, 1));
        // Known names, known or one more agent: fine.
        assert_eq!(
            n.check(caps, &snap("a", &["m2"], &["site"]), 1, false),
            Ok(())
        );
        assert_eq!(n.check(caps, &snap("b", &["m1"], &[]), 1, true), Ok(()));
        // A third agent, metric or a second label key: refused, naming the cap.
        let e = n.check(caps, &snap("c", &[], &[]), 2, true).unwrap_err();
        assert!(e.contains("store.max_agents"), "{e}");
        let e = n
            .check(caps, &snap("a", &["m1", "m3"], &[]), 1, false)
            .unwrap_err();
        assert!(
            e.contains("m3") && e.contains("store.max_metric_names"),
            "{e}"
        );
        let e = n
            .check(caps, &snap("a", &[], &["rack"]), 1, false)
            .unwrap_err();
        assert!(
            e.contains("rack") && e.contains("store.max_label_keys"),
            "{e}"
        );
        assert_eq!(
            (n.metrics(), n.label_keys()),
            (2, 1),
            "a check adds nothing"
        );
    }
}
