//! The JSON answers of the `INFLIGHT` and `RESOLVE` extensions: their
//! schema, written by the daemon and read by [`crate::client`], so both
//! sides share one definition. Keys are the interface of
//! `tidstorage inflight --format json` too: add, never rename.

use serde::{Deserialize, Serialize};

/// `state` of an in-flight transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// Begun, not ended: its client may still report the outcome.
    #[serde(rename = "in-flight")]
    InFlight,
    /// Its id began again (or its COMMIT came without a BEGIN and cannot be
    /// trusted): no message can end it; `resolve` or a restart does.
    #[serde(rename = "orphan")]
    Orphan,
}

/// One transaction of an `INFLIGHT` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlightTransaction {
    /// The client's transaction id.
    pub id: String,
    pub state: TxnState,
    /// Since its BEGIN (daemon's monotonic clock).
    pub age_seconds: f64,
    /// Its storages (BEGIN, plus any its COMMIT added).
    pub storages: Vec<String>,
    /// True when it holds some storage's point back (`holds_back` not empty).
    pub blocking: bool,
    /// Storages whose point it holds back, directly (a commit waits above
    /// what it allows there) or through the no-split rule (a committed
    /// transaction it holds back also touched them). Sorted.
    #[serde(default)]
    pub holds_back: Vec<String>,
    /// How long the oldest commit it holds back has waited (now minus that
    /// commit's TID time); null when it holds nothing back.
    #[serde(default)]
    pub blocking_seconds: Option<f64>,
    /// Older than `stale_after` (reported in the server log).
    #[serde(default)]
    pub stale: bool,
    /// `HOST:PORT` of the connection its BEGIN came on, when known.
    #[serde(default)]
    pub client: Option<String>,
    /// Why no later message can end it (conflicting reports, a refused
    /// TID), when that is so.
    #[serde(default)]
    pub blocked_because: Option<String>,
}

/// The `INFLIGHT` answer: every in-flight and orphaned transaction, oldest
/// first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlightAnswer {
    pub transactions: Vec<InFlightTransaction>,
}

/// The `RESOLVE` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolveAnswer {
    /// The id asked for.
    pub id: String,
    /// The transactions no longer waited for, as they were just before.
    pub resolved: Vec<InFlightTransaction>,
    /// Why nothing was resolved, when nothing was.
    pub refused: Option<String>,
    /// Where the resolution is recorded: `"status file"` when the record
    /// was written, else why not yet (it then goes with the next record).
    pub recorded: Option<String>,
}

impl InFlightAnswer {
    /// The transactions holding back `storage`, oldest first.
    pub fn holding_back<'a>(
        &'a self,
        storage: &'a str,
    ) -> impl Iterator<Item = &'a InFlightTransaction> + 'a {
        self.transactions
            .iter()
            .filter(move |t| t.holds_back.iter().any(|s| s == storage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_the_documented_one() {
        let a = InFlightAnswer {
            transactions: vec![InFlightTransaction {
                id: "t1".into(),
                state: TxnState::Orphan,
                age_seconds: 3.2,
                storages: vec!["a".into()],
                blocking: true,
                holds_back: vec!["a".into()],
                blocking_seconds: Some(1.5),
                stale: false,
                client: Some("127.0.0.1:5".into()),
                blocked_because: None,
            }],
        };
        let v = serde_json::to_value(&a).unwrap();
        let t = &v["transactions"][0];
        assert_eq!(t["id"], "t1");
        assert_eq!(t["state"], "orphan");
        assert_eq!(t["age_seconds"], 3.2);
        assert_eq!(t["storages"], serde_json::json!(["a"]));
        assert_eq!(t["blocking"], true);
        let back: InFlightAnswer = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.holding_back("a").count(), 1);
        assert_eq!(back.holding_back("b").count(), 0);
        let v: InFlightAnswer = serde_json::from_str(
            r#"{"transactions":[{"id":"x","state":"in-flight","age_seconds":1,"storages":[],"blocking":false}]}"#,
        )
        .unwrap();
        assert_eq!(v.transactions[0].state, TxnState::InFlight);
    }
}
