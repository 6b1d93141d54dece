use super::*;

fn error_of(config: &ExperimentConfig) -> String {
    config.validate().unwrap_err().to_string()
}

#[test]
fn validate_rejects_grids_tuning_cannot_serve_and_empty_samples() {
    let tuned = ExperimentConfig {
        tune: Some(TuneConfig::default()),
        ..ExperimentConfig::default()
    };
    tuned.validate().unwrap();
    // One choice per method: a second F or a second loss would overwrite it.
    let two_fs = ExperimentConfig {
        phases: vec![2, 4],
        ..tuned.clone()
    };
    assert!(error_of(&two_fs).contains("one loss and one F > 1"));
    let two_losses = ExperimentConfig {
        losses: vec![LossKind::Dpo, LossKind::Ipo],
        ..tuned.clone()
    };
    assert!(error_of(&two_losses).contains("one loss and one F > 1"));
    // F = 1 is offline DAP only: still one setting per method.
    ExperimentConfig {
        phases: vec![1, 2],
        ..tuned.clone()
    }
    .validate()
    .unwrap();
    let mut empty = ExperimentConfig::default();
    empty.eval.limit = Some(0);
    assert!(error_of(&empty).contains("eval.limit"));
    let mut empty_dev = tuned;
    empty_dev.tune.as_mut().unwrap().limit = Some(0);
    assert!(error_of(&empty_dev).contains("tune.limit"));
}
