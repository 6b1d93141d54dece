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
    /// The evaluation settings.
    pub(crate) eval: &'a ExperimentEval,
    /// The full evaluation (held-out judge and KL) or the gold win rate only.
    pub(crate) full: bool,
    /// The prompts evaluated.
    pub(crate) prompts: &'a [PromptRecord],
    /// The prompts of the learning curve (none in frontier mode).
    pub(crate) curve_prompts: &'a [PromptRecord],
}

/// The settings a stored result is checked against: the current ones, and the same settings
/// at bpo's defaults (an option a stored result predates must be at its default now).
pub(crate) struct Settings {
    current: String,
    defaults: String,
}

/// `eval` as JSON without what does not change a run's outcomes: the bootstrap's resamples
/// (statistics are computed at report time) and which curve prompts to draw (their contents
/// are fingerprinted).
fn eval_json(eval: &ExperimentEval) -> serde_json::Value {
    let mut value = serde_json::to_value(eval).expect("json");
    if let Some(object) = value.as_object_mut() {
        object.remove("curve_limit");
        object.remove("curve_prompts");
        if let Some(settings) = object.get_mut("settings").and_then(|s| s.as_object_mut()) {
            settings.remove("bootstrap");
        }
    }
    value
}

fn run_json(online: &OnlineConfig, evaluated: &Evaluated<'_>) -> String {
    let mut online = online.clone();
    online.run.out = Default::default();
    serde_json::to_string(&(
        online,
        eval_json(evaluated.eval),
        evaluated.full,
        fingerprint(evaluated.prompts),
        fingerprint(evaluated.curve_prompts),
    ))
    .expect("json")
}

/// The settings that determine a run's result: its online config (output directory left out)
/// and what it is evaluated on.
pub(crate) fn run_settings(online: &OnlineConfig, evaluated: &Evaluated<'_>) -> Settings {
    let defaults = Evaluated {
        eval: &ExperimentEval::default(),
        ..*evaluated
    };
    Settings {
        current: run_json(online, evaluated),
        defaults: run_json(&OnlineConfig::default(), &defaults),
    }
}

fn initial_json(online: &OnlineConfig, eval: &ExperimentEval, prompts: &[PromptRecord]) -> String {
    let what = (
        &online.model,
        &online.device,
        &online.dtype,
        &online.annotator,
        eval_json(eval),
        fingerprint(prompts),
    );
    serde_json::to_string(&what).expect("json")
}

/// The settings that determine the initial policy's evaluation: the model, device and
/// precision, the gold judge, the evaluation settings and the prompts.
pub(crate) fn initial_settings(
    online: &OnlineConfig,
    eval: &ExperimentEval,
    prompts: &[PromptRecord],
) -> Settings {
    Settings {
        current: initial_json(online, eval, prompts),
        defaults: initial_json(
            &OnlineConfig::default(),
            &ExperimentEval::default(),
            prompts,
        ),
    }
}

/// Whether `stored` settings (JSON text) agree with `settings`: every value both have is equal,
/// and an option the stored ones lack (added to bpo after the result was stored) is at its
/// default now; an option only the stored ones have (since removed) does not count. All texts
/// are parsed the same way, so equal numbers compare equal.
fn same_settings(stored: &str, settings: &Settings) -> bool {
    use serde_json::Value;
    fn agree(stored: &Value, current: &Value, default: Option<&Value>) -> bool {
        match (stored, current) {
            (Value::Object(s), Value::Object(c)) => c.iter().all(|(key, vc)| {
                let vd = default.and_then(|d| d.get(key));
                match s.get(key) {
                    Some(vs) => agree(vs, vc, vd),
                    None => vd == Some(vc),
                }
            }),
            (Value::Array(s), Value::Array(c)) => {
                s.len() == c.len()
                    && s.iter()
                        .zip(c)
                        .enumerate()
                        .all(|(i, (x, y))| agree(x, y, default.and_then(|d| d.get(i))))
            }
            _ => stored == current,
        }
    }
    let parse = |text: &str| serde_json::from_str::<Value>(text).ok();
    match (
        parse(stored),
        parse(&settings.current),
        parse(&settings.defaults),
    ) {
        (Some(s), Some(c), defaults) => agree(&s, &c, defaults.as_ref()),
        _ => false,
    }
}

/// The result stored at `path` when it was produced with `settings`; none when there is none,
/// it was produced otherwise, or it cannot be read (then it is simply produced again).
pub(crate) fn stored<T: DeserializeOwned>(path: &Path, settings: &Settings) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    let stored: Stored<T> = serde_json::from_str(&text).ok()?;
    same_settings(&stored.settings, settings).then_some(stored.result)
}

/// Stores `result` at `path` with `settings` (written whole or not at all).
pub(crate) fn store<T: Serialize>(
    path: &Path,
    settings: &Settings,
    result: &T,
) -> Result<(), AlgoError> {
    let stored = Stored {
        settings: settings.current.clone(),
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
        // An option added to bpo since (absent from the stored settings) must be at its
        // default now; one removed since (only in the stored settings) does not count.
        let now = |current: &str| Settings {
            current: current.into(),
            defaults: r#"{"a": 0, "b": {"c": 0.5, "new": 2}}"#.into(),
        };
        let stored_text = r#"{"a": 1, "b": {"c": 0.1}, "gone": 3}"#;
        assert!(same_settings(
            stored_text,
            &now(r#"{"a": 1, "b": {"c": 0.1, "new": 2}}"#)
        ));
        assert!(!same_settings(
            stored_text,
            &now(r#"{"a": 1, "b": {"c": 0.1, "new": 5}}"#)
        ));
        assert!(!same_settings(
            stored_text,
            &now(r#"{"a": 1, "b": {"c": 0.3}}"#)
        ));
        assert!(!same_settings(r#"{"a": [1, 2]}"#, &now(r#"{"a": [1]}"#)));
        // The bootstrap's resamples do not change a run's outcomes.
        let mut resampled = eval.clone();
        resampled.settings.bootstrap = 10;
        let same_runs = evaluated(&resampled, true, &prompts);
        assert_eq!(
            stored::<f64>(&path, &settings_of(&online, &same_runs)),
            Some(0.1)
        );
        // A damaged file is produced again, not an error.
        std::fs::write(&path, "{").unwrap();
        assert_eq!(stored::<f64>(&path, &settings), None);
    }
}
