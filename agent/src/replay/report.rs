//! The JSON report `fleetset-agent replay` prints on stdout: what it found in the input and did
//! about it, per agent and in total, and warnings (also logged) for what is replayed but
//! physically doubtful.

use serde::Serialize;

/// Counts of what replay read and framed (one agent's, or the total of all).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Data rows read.
    pub rows: u64,
    /// Rows skipped because the timestamp did not parse, or lies outside what the frame
    /// contract accepts (`0 ≤ ts <` `fleetset_proto::contract::MAX_TIME_MS`, i.e. before 1970
    /// or after 9999; only with `--allow-any-time`, which lets such times past the check).
    pub bad_timestamps: u64,
    /// Value cells that hold no finite number, replayed as NaN and dropped before stats: the sum
    /// of the four kinds below.
    pub bad_values: u64,
    /// Value cells that read as NaN (`nan`, `NaN`: collectd writes `nan` for an unknown
    /// reading).
    pub nan_values: u64,
    /// Value cells that read as ±infinity (`inf`, `-Infinity`).
    pub infinite_values: u64,
    /// Value cells that are empty, or missing from a short row.
    pub empty_values: u64,
    /// Value cells that are no number at all (`n/a`, `1,5`).
    pub unparseable_values: u64,
    /// Rows whose timestamp is before the previous row's (sorted into place).
    pub out_of_order: u64,
    /// Rows whose timestamp equals the previous row's in the same file.
    pub repeated_timestamps: u64,
    /// Samples of a series fed by several files (one agent, a metric name shared through
    /// `--metric-map`) at a timestamp an earlier file already gave for that series.
    pub repeated_across_files: u64,
    /// Steps longer than 3× the file's median step.
    pub gaps: u64,
    /// Windows framed and spooled.
    pub windows: u64,
    /// Windows skipped because they were framed by an earlier (interrupted) replay.
    pub windows_already_sent: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, o: &Counts) {
        let Counts {
            rows,
            bad_timestamps,
            bad_values,
            nan_values,
            infinite_values,
            empty_values,
            unparseable_values,
            out_of_order,
            repeated_timestamps,
            repeated_across_files,
            gaps,
            windows,
            windows_already_sent,
        } = self;
        *rows += o.rows;
        *bad_timestamps += o.bad_timestamps;
        *bad_values += o.bad_values;
        *nan_values += o.nan_values;
        *infinite_values += o.infinite_values;
        *empty_values += o.empty_values;
        *unparseable_values += o.unparseable_values;
        *out_of_order += o.out_of_order;
        *repeated_timestamps += o.repeated_timestamps;
        *repeated_across_files += o.repeated_across_files;
        *gaps += o.gaps;
        *windows += o.windows;
        *windows_already_sent += o.windows_already_sent;
    }

    /// Sets `bad_values` to the sum of its kinds.
    pub(crate) fn sum_bad_values(&mut self) {
        self.bad_values =
            self.nan_values + self.infinite_values + self.empty_values + self.unparseable_values;
    }
}

/// One replaying agent's part of the report.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct AgentReport {
    /// The agent id its windows carry.
    pub agent_id: String,
    /// The files it replayed.
    pub files: Vec<String>,
    /// What it read and framed.
    #[serde(flatten)]
    pub counts: Counts,
    /// Host attributes no `--host` gave (`cpu_count`, `memory_total_mb`): its windows carry 0.
    pub host_attributes_unknown: Vec<String>,
}

/// What replay found in the input and did about it: the totals, each agent, warnings.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// The sums over all agents.
    #[serde(flatten)]
    pub total: Counts,
    /// Per agent, in the order of the files.
    pub agents: Vec<AgentReport>,
    /// What was replayed but is doubtful (host attributes unknown, series merged over
    /// repeated timestamps); each is also logged.
    pub warnings: Vec<String>,
}
