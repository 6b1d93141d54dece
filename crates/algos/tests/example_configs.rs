//! Every example config in examples/configs parses into its command's config type and passes
//! validation, so the documented commands keep working.

use std::path::PathBuf;

use bpo_algos::annotate::AnnotatorConfig;
use bpo_algos::rm::RewardModelConfig;
use bpo_algos::{OnlineConfig, SftConfig, TrainConfig, load_config};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/configs")
        .join(name)
}

#[test]
fn bf16_products_need_lora_and_the_instructions() {
    let set = ["run.bf16_products=true".to_owned()];
    let full: TrainConfig = load_config(&path("dpo_full_tiny.toml"), &set).unwrap();
    let err = full.validate().unwrap_err().to_string();
    assert!(err.contains("[lora]"), "{err}");
    let lora: TrainConfig = load_config(&path("dpo_lora.toml"), &set).unwrap();
    let online: OnlineConfig = load_config(&path("bpo_sentiment_lora.toml"), &set).unwrap();
    for result in [lora.validate(), online.validate()] {
        match bpo_model::flex::bf16_supported() {
            true => result.unwrap(),
            false => assert!(result.unwrap_err().to_string().contains("AVX512-BF16")),
        }
    }
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
    // The README's BPO run labelled by the reward model `bpo rm train` writes.
    let sets = [
        "annotator.kind=reward_model".to_owned(),
        "annotator.path=runs/rm_sentiment/reward-model".to_owned(),
    ];
    let labelled: OnlineConfig = load_config(&path("bpo_sentiment_lora.toml"), &sets).unwrap();
    let AnnotatorConfig::RewardModel { path: model, .. } = &labelled.annotator else {
        panic!("{:?}", labelled.annotator)
    };
    assert_eq!(model, &PathBuf::from("runs/rm_sentiment/reward-model"));
    let rm: RewardModelConfig = load_config(&path("rm_sentiment.toml"), &[]).unwrap();
    rm.optim.validate().unwrap();
    assert_eq!(
        std::fs::read_dir(path("")).unwrap().count(),
        5,
        "a new example config needs a line here"
    );
}
