//! Finished work is kept and reused, so that a long experiment (a frontier grid runs for hours)
//! survives a stop and can grow: each finished run writes `result.json` into its directory, the
//! initial policy's evaluation `initial.json` into the results directory, each with the
//! settings that produced it. A later experiment with the same settings for that run (its
//! online config apart from the output directory, the seed included; the evaluation settings;
//! the prompts evaluated) takes the stored result instead of training again; different
//! settings run afresh and replace it. Adding seeds or betas to a finished grid trains only the
//! new runs. The contents of the training prompt file are not part of the settings: delete
//! the results directory after editing it.

use std::path::Path;

use bpo_data::PromptRecord;
use bpo_model::fsutil::write_atomic;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::AlgoError;
use crate::experiment::config::ExperimentEval;
use crate::online::config::OnlineConfig;

/// A stored result and the settings it was produced with.
#[derive(Serialize, Deserialize)]
struct Stored<T> {
    /// The settings, as JSON text.
    settings: String,
    result: T,
}

/// The SHA-256 of `prompts` as JSON.
fn fingerprint(prompts: &[PromptRecord]) -> String {
    let json = serde_json::to_vec(prompts).expect("json");
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a run's result is made of, beyond its online config: the evaluation settings, whether
/// the evaluation is the full one, and the prompts evaluated and those of the learning curve.
pub(crate) struct Evaluated<'a> {
    pub(crate) eval: &'a ExperimentEval,
    pub(crate) full: bool,
    pub(crate) prompts: &'a [PromptRecord],
    pub(crate) curve_prompts: &'a [PromptRecord],
}

/// The settings that determine a run's result: its online config (output directory left out)
/// and what it is evaluated on.
pub(crate) fn run_settings(online: &OnlineConfig, evaluated: &Evaluated<'_>) -> String {
    let mut online = online.clone();
    online.run.out = Default::default();
    serde_json::to_string(&(
        online,
        evaluated.eval,
        evaluated.full,
        fingerprint(evaluated.prompts),
        fingerprint(evaluated.curve_prompts),
    ))
    .expect("json")
}

/// The settings that determine the initial policy's evaluation: the model, the evaluation
/// settings and the prompts.
pub(crate) fn initial_settings(
    model: &str,
    eval: &ExperimentEval,
    prompts: &[PromptRecord],
) -> String {
    serde_json::to_string(&(model, eval, fingerprint(prompts))).expect("json")
}

/// Whether two settings (JSON texts) agree: every value both have is equal. An option one
/// side lacks (added to or removed from bpo after a result was stored) does not count, so that
/// a long experiment survives an upgrade that adds options with unchanged defaults. Both texts
/// are parsed the same way, so equal numbers compare equal.
fn same_settings(stored: &str, current: &str) -> bool {
    use serde_json::Value;
    fn agree(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => a
                .iter()
                .all(|(key, va)| b.get(key).is_none_or(|vb| agree(va, vb))),
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| agree(x, y))
            }
            _ => a == b,
        }
    }
    match (
        serde_json::from_str::<Value>(stored),
        serde_json::from_str::<Value>(current),
    ) {
        (Ok(a), Ok(b)) => agree(&a, &b),
        _ => false,
    }
}

/// The result stored at `path` when it was produced with `settings`; none when there is none,
/// it was produced otherwise, or it cannot be read (then it is simply produced again).
pub(crate) fn stored<T: DeserializeOwned>(path: &Path, settings: &str) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    let stored: Stored<T> = serde_json::from_str(&text).ok()?;
    same_settings(&stored.settings, settings).then_some(stored.result)
}

/// Stores `result` at `path` with `settings` (written whole or not at all).
pub(crate) fn store<T: Serialize>(
    path: &Path,
    settings: &str,
    result: &T,
) -> Result<(), AlgoError> {
    let stored = Stored {
        settings: settings.to_owned(),
        result,
    };
    let text = serde_json::to_string(&stored).expect("json");
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_is_reused_only_with_the_settings_it_was_produced_with() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        let eval = ExperimentEval::default();
        let prompts: Vec<PromptRecord> =
            vec![serde_json::from_str(r#"{"prompt": "a", "reference": "b"}"#).unwrap()];
        let other_prompts: Vec<PromptRecord> =
            vec![serde_json::from_str(r#"{"prompt": "c", "reference": "b"}"#).unwrap()];
        let evaluated = |eval, full, prompts| Evaluated {
            eval,
            full,
            prompts,
            curve_prompts: &[],
        };
        let settings_of = |online: &OnlineConfig, e: &Evaluated<'_>| run_settings(online, e);
        let mut online = OnlineConfig::default();
        let settings = settings_of(&online, &evaluated(&eval, true, &prompts));
        assert_eq!(stored::<f64>(&path, &settings), None);
        store(&path, &settings, &0.1f64).unwrap();
        assert_eq!(stored::<f64>(&path, &settings), Some(0.1));
        // The output directory does not matter; the seed, beta and evaluation do.
        online.run.out = "elsewhere".into();
        let same = evaluated(&eval, true, &prompts);
        assert_eq!(
            stored::<f64>(&path, &settings_of(&online, &same)),
            Some(0.1)
        );
        let partial = evaluated(&eval, false, &prompts);
        assert_eq!(stored::<f64>(&path, &settings_of(&online, &partial)), None);
        let elsewhere = evaluated(&eval, true, &other_prompts);
        assert_eq!(
            stored::<f64>(&path, &settings_of(&online, &elsewhere)),
            None
        );
        let mut other = online.clone();
        other.run.seed += 1;
        assert_eq!(stored::<f64>(&path, &settings_of(&other, &same)), None);
        let mut other = online.clone();
        other.loss.beta = 0.3;
        assert_eq!(stored::<f64>(&path, &settings_of(&other, &same)), None);
        let mut other_eval = eval.clone();
        other_eval.limit = Some(7);
        let other_settings = evaluated(&other_eval, true, &prompts);
        assert_eq!(
            stored::<f64>(&path, &settings_of(&online, &other_settings)),
            None
        );
        // An option added to bpo since (absent from the stored settings) does not count.
        assert!(same_settings(
            r#"{"a": 1, "b": {"c": 0.1}}"#,
            r#"{"a": 1, "b": {"c": 0.1, "new": 2}}"#
        ));
        assert!(!same_settings(
            r#"{"a": 1, "b": {"c": 0.1}}"#,
            r#"{"a": 1, "b": {"c": 0.3}}"#
        ));
        assert!(!same_settings(r#"{"a": [1, 2]}"#, r#"{"a": [1]}"#));
        // A damaged file is produced again, not an error.
        std::fs::write(&path, "{").unwrap();
        assert_eq!(stored::<f64>(&path, &settings), None);
    }
}
