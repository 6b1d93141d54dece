//! Adapters on weights the checkpoint fuses (Phi-3's `qkv_proj` and `gate_up_proj`, GPT-2's
//! `c_attn`) written in PEFT's layout as one block-diagonal adapter per module: read back by
//! bpo exactly; loaded by PEFT onto the base that transformers built, every tensor landing and
//! the adapted logits equal to bpo's merged export (with `BPO_PYTHON` set to a Python with
//! torch, transformers and peft, as in CI).

use std::path::Path;
use std::process::Command;

use bpo_algos::config::LoraConfig;
use bpo_algos::lora::{adapters, apply_lora, load_adapters, merged, save_adapters};
use bpo_model::burn::tensor::Device;
use bpo_model::weights::{TensorMap, hf_dir, safetensors};
use bpo_model::{ModelType, Transformer};
use bpo_testkit::{tiny_model, tokenizer, with_random_lora_b};

/// A fused architecture and how its adapters land in PEFT.
struct Case {
    model_type: ModelType,
    /// Its directory among the models `transformers_parity.py build` writes.
    directory: &'static str,
    /// LoRA targets (some parts of a fused module left out, so that its adapter has rows of
    /// zeros).
    targets: &'static [&'static str],
    /// PEFT's `target_modules` they land in.
    modules: &'static [&'static str],
    /// A fused module and how many of its parts are adapted.
    fused: (&'static str, usize),
}

const CASES: [Case; 2] = [
    Case {
        model_type: ModelType::PHI3,
        directory: "phi3",
        targets: &["k", "v", "gate", "up", "down"],
        modules: &["qkv_proj", "gate_up_proj", "down_proj"],
        fused: ("qkv_proj", 2),
    },
    Case {
        model_type: ModelType::GPT2,
        directory: "gpt2",
        targets: &["q", "v", "o", "up"],
        modules: &["c_attn", "attn.c_proj", "c_fc"],
        fused: ("c_attn", 2),
    },
];

fn lora(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        ..LoraConfig::default()
    }
}

fn config_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("adapter_config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn fused_modules_are_written_block_diagonal_and_read_back_exactly() {
    let device = Device::flex().autodiff();
    for Case {
        model_type,
        targets,
        modules,
        fused: (fused, parts),
        ..
    } in CASES
    {
        let dir = tempfile::tempdir().unwrap();
        let lora = lora(targets);
        let base = tiny_model(model_type, 3, &device);
        let adapted = with_random_lora_b(apply_lora(base.clone(), &lora, 1).unwrap(), 9);
        save_adapters(&adapted, &lora, "tiny", dir.path()).unwrap();
        let config = config_json(dir.path());
        for module in modules {
            let listed = config["target_modules"].as_array().unwrap();
            assert!(
                listed.contains(&(*module).into()),
                "{model_type:?}: {config}"
            );
        }
        assert_eq!(config["rank_pattern"][fused], 2 * parts, "{config}");
        assert_eq!(
            config["alpha_pattern"][fused],
            4.0 * parts as f64,
            "{config}"
        );
        assert_eq!(config["fan_in_fan_out"], model_type == ModelType::GPT2);
        let fresh = |lora: &LoraConfig| apply_lora(base.clone(), lora, 2).unwrap();
        let reloaded = load_adapters(fresh(&lora), &lora, dir.path()).unwrap();
        assert_eq!(adapters(&reloaded), adapters(&adapted), "{model_type:?}");

        // Independently of how bpo splits them again: PEFT's update of the fused module,
        // scale x lora_B @ lora_A, is what merging the adapters added to its weight.
        let file = dir.path().join("adapter_model.safetensors");
        let mut map = TensorMap::new("adapter");
        safetensors::read_into(&file, &mut map).unwrap();
        let module = format!(
            "base_model.model.{}.0.{}",
            if model_type == ModelType::GPT2 {
                "transformer.h"
            } else {
                "model.layers"
            },
            if model_type == ModelType::GPT2 {
                "attn.c_attn"
            } else {
                "self_attn.qkv_proj"
            },
        );
        let a = &map.tensors[&format!("{module}.lora_A.weight")];
        let b = &map.tensors[&format!("{module}.lora_B.weight")];
        let (out, rank, d_in) = (b.shape[0], b.shape[1], a.shape[1]);
        let scale = 4.0 / 2.0; // alpha / r of every part
        let hf_name = format!("{}.weight", module.trim_start_matches("base_model.model."));
        let merged_weight = &merged(&adapted).to_tensor_map().tensors[&hf_name];
        let base_weight = &base.to_tensor_map().tensors[&hf_name];
        let mut worst = 0f32;
        for o in 0..out {
            for i in 0..d_in {
                let delta: f32 = (0..rank)
                    .map(|k| b.data[o * rank + k] * a.data[k * d_in + i])
                    .sum();
                // GPT-2's Conv1D stores [in, out].
                let at = match model_type == ModelType::GPT2 {
                    true => i * out + o,
                    false => o * d_in + i,
                };
                let added = merged_weight.data[at] - base_weight.data[at];
                worst = worst.max((scale * delta - added).abs());
            }
        }
        assert!(worst < 1e-5, "{model_type:?}: {module} differs by {worst}");

        // Another scale than the adapter was trained with is refused, naming the file.
        let other = LoraConfig {
            alpha: 8.0,
            ..lora.clone()
        };
        let err = load_adapters(fresh(&other), &other, dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("adapter_config.json") && err.contains("scale"),
            "{err}"
        );

        // A fused adapter PEFT trained on the whole module (not block-diagonal) is refused.
        let (name, b) = map
            .tensors
            .iter_mut()
            .find(|(name, _)| name.contains(fused) && name.ends_with("lora_B.weight"))
            .unwrap();
        let zero = b.data.iter().position(|v| *v == 0.0).unwrap();
        b.data[zero] = 0.5;
        let name = name.clone();
        safetensors::write(&file, &map).unwrap();
        let err = load_adapters(fresh(&lora), &lora, dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not block-diagonal") && err.contains(&name),
            "{err}"
        );
    }
}

fn python(python: &std::ffi::OsStr, script: &str, args: &[&str]) {
    let path = format!("{}/../../scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python).arg(path).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

fn load_hf(dir: &Path, device: &Device) -> Transformer {
    let config = hf_dir::read_config(dir).unwrap();
    Transformer::from_tensor_map(&config, hf_dir::read_tensors(dir).unwrap(), device).unwrap()
}

#[test]
fn peft_loads_fused_adapters_onto_the_transformers_base() {
    let Some(py) = std::env::var_os("BPO_PYTHON") else {
        eprintln!("skipped: set BPO_PYTHON to a Python with torch, transformers and peft");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    python(&py, "transformers_parity.py", &["build", root]);
    let device = Device::flex().autodiff();
    for Case {
        directory: name,
        targets,
        modules,
        ..
    } in CASES
    {
        let base_dir = dir.path().join(name);
        let lora = lora(targets);
        let adapted = with_random_lora_b(
            apply_lora(load_hf(&base_dir, &device), &lora, 1).unwrap(),
            9,
        );
        let adapter = dir.path().join(format!("{name}-adapter"));
        save_adapters(&adapted, &lora, base_dir.to_str().unwrap(), &adapter).unwrap();
        let export = dir.path().join(format!("{name}-merged"));
        let model = merged(&adapted);
        hf_dir::write(&export, &model.config, &model.to_tensor_map(), &tokenizer()).unwrap();
        let mut args = vec![
            "peft",
            base_dir.to_str().unwrap(),
            adapter.to_str().unwrap(),
            export.to_str().unwrap(),
            "--expect-modules",
        ];
        args.extend(modules);
        python(&py, "check_interop.py", &args);
    }
}
