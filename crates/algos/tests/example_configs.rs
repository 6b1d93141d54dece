//! Every example config in examples/configs parses into its command's config type and passes
//! validation, so the documented commands keep working.

use std::path::PathBuf;

use bpo_algos::rm::RewardModelConfig;
use bpo_algos::{OnlineConfig, SftConfig, TrainConfig, load_config};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/configs")
        .join(name)
}

#[test]
fn example_configs_parse_and_validate() {
    for name in ["dpo_lora.toml", "dpo_full_tiny.toml"] {
        let c: TrainConfig = load_config(&path(name), &[]).unwrap();
        c.loss.validate().unwrap();
        c.run.validate().unwrap();
    }
    let sft: SftConfig = load_config(&path("sft_sentiment_lora.toml"), &[]).unwrap();
    sft.run.validate().unwrap();
    let online: OnlineConfig = load_config(&path("bpo_sentiment_lora.toml"), &[]).unwrap();
    online.validate().unwrap();
    let rm: RewardModelConfig = load_config(&path("rm_sentiment.toml"), &[]).unwrap();
    rm.optim.validate().unwrap();
    assert_eq!(
        std::fs::read_dir(path("")).unwrap().count(),
        5,
        "a new example config needs a line here"
    );
}
