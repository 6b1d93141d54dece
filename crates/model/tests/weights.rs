//! Weights: GGUF reading (every tensor type, malformed files), GGUF and safetensors model
//! round trips with identical logits.

use std::path::Path;

use bpo_model::burn::tensor::{Device, Tensor};
use bpo_model::config::MODEL_TYPES;
use bpo_model::host::to_f32_vec;
use bpo_model::spec::{load, save_hf};
use bpo_model::weights::HostTensor;
use bpo_model::weights::gguf::{GgmlType, GgufFile, MetaValue, dequantize};
use bpo_model::{ModelType, PaddingSide, TokenBatch, Transformer};
use bpo_testkit::GgufWriter;
use bpo_testkit::{max_abs_diff, tiny_model, tokenizer, tokenizer_metadata};
use half::{bf16, f16};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    to_f32_vec(t)
}

fn logits(model: &Transformer) -> Vec<f32> {
    let vocab = model.config.vocab_size as u32;
    let seqs: Vec<Vec<u32>> = (0..2)
        .map(|r| (0..9).map(|i| (i * 13 + r * 31 + 3) % vocab).collect())
        .collect();
    values(model.forward(&TokenBatch::padded(&seqs, 0, PaddingSide::Right)))
}

/// One block of each quantised type, with codes and scales chosen so the expected values are
/// exact.
fn quantized_blocks() -> Vec<(&'static str, GgmlType, Vec<u8>, Vec<f32>)> {
    let mut out = Vec::new();
    // Q8_0: d = 0.5, codes -16..=15.
    let mut q8 = f16::from_f32(0.5).to_le_bytes().to_vec();
    let codes: Vec<i8> = (-16..16).collect();
    q8.extend(codes.iter().map(|&c| c as u8));
    out.push((
        "q8_0",
        GgmlType::Q8_0,
        q8,
        codes.iter().map(|&c| c as f32 * 0.5).collect(),
    ));
    // Q4_0: d = 0.25; element j < 16 is the low nibble of byte j, element j + 16 the high one.
    let nibbles: Vec<u8> = (0..32).map(|j| (j * 7 % 16) as u8).collect();
    let packed: Vec<u8> = (0..16)
        .map(|j| nibbles[j] | (nibbles[j + 16] << 4))
        .collect();
    let mut q4_0 = f16::from_f32(0.25).to_le_bytes().to_vec();
    q4_0.extend(&packed);
    out.push((
        "q4_0",
        GgmlType::Q4_0,
        q4_0,
        nibbles.iter().map(|&q| (q as f32 - 8.0) * 0.25).collect(),
    ));
    // Q4_1: d = 0.5, m = -1.0.
    let mut q4_1 = f16::from_f32(0.5).to_le_bytes().to_vec();
    q4_1.extend(f16::from_f32(-1.0).to_le_bytes());
    q4_1.extend(&packed);
    out.push((
        "q4_1",
        GgmlType::Q4_1,
        q4_1,
        nibbles.iter().map(|&q| q as f32 * 0.5 - 1.0).collect(),
    ));
    out
}

/// The file's bytes and every tensor it holds, as expected after dequantisation.
fn every_type_file() -> (Vec<u8>, Vec<(String, HostTensor)>) {
    let exact = [0.5f32, -1.25, 3.0, 0.0, -0.0625, 1024.0];
    let mut writer = GgufWriter::new()
        .meta("general.architecture", MetaValue::String("llama".into()))
        .meta("general.name", MetaValue::String("every type".into()));
    let mut expected = Vec::new();
    writer = writer.tensor_f32("f32", &HostTensor::new(vec![2, 3], exact.to_vec()));
    expected.push(("f32".into(), HostTensor::new(vec![2, 3], exact.to_vec())));
    let f16_bytes = exact
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect();
    writer = writer.tensor("f16", &[3, 2], GgmlType::F16, f16_bytes);
    expected.push(("f16".into(), HostTensor::new(vec![3, 2], exact.to_vec())));
    let bf16_bytes = exact
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect();
    writer = writer.tensor("bf16", &[6], GgmlType::Bf16, bf16_bytes);
    expected.push(("bf16".into(), HostTensor::new(vec![6], exact.to_vec())));
    for (name, ty, bytes, values) in quantized_blocks() {
        // Two rows of one block each, the second row repeating the first.
        let mut two = bytes.clone();
        two.extend(&bytes);
        writer = writer.tensor(name, &[2, 32], ty, two);
        let mut vals = values.clone();
        vals.extend(&values);
        expected.push((name.into(), HostTensor::new(vec![2, 32], vals)));
    }
    (writer.to_bytes(), expected)
}

#[test]
fn gguf_reads_every_supported_tensor_type_exactly() {
    let (bytes, expected) = every_type_file();
    let file = GgufFile::parse(Path::new("every.gguf"), bytes).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(
        file.meta("general.name").and_then(MetaValue::as_str),
        Some("every type")
    );
    for (name, want) in expected {
        assert_eq!(file.tensor(&name).unwrap(), want, "{name}");
    }
}

#[test]
fn dequantize_q4_0_sign_convention() {
    // Code 0 is -8 * d, code 15 is +7 * d.
    let mut block = f16::from_f32(1.0).to_le_bytes().to_vec();
    block.extend([0xF0u8; 16]);
    let v = dequantize(GgmlType::Q4_0, &block);
    assert_eq!(v[0], -8.0);
    assert_eq!(v[16], 7.0);
}

#[test]
fn truncated_gguf_is_an_error_at_every_length() {
    let (bytes, _) = every_type_file();
    for len in 0..bytes.len() {
        let result = GgufFile::parse(Path::new("cut.gguf"), bytes[..len].to_vec());
        // The writer ends the file with the last tensor's data, so every prefix cuts something.
        let err = match result {
            Ok(_) => panic!("prefix of {len} bytes parsed"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("cut.gguf"), "{err}");
    }
}

#[test]
fn corrupted_gguf_never_panics() {
    let (bytes, _) = every_type_file();
    let mut state = 0x2545F4914F6CDD1Du64;
    for _ in 0..2000 {
        let mut copy = bytes.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % copy.len() as u64) as usize;
            copy[at] = (state >> 32) as u8;
        }
        if let Ok(file) = GgufFile::parse(Path::new("x.gguf"), copy) {
            for t in file.tensors.clone() {
                let _ = file.tensor(&t.name);
            }
            let _ = file.config();
        }
    }
}

#[test]
fn malformed_gguf_messages_name_the_problem() {
    let err = GgufFile::parse(Path::new("a.gguf"), b"GGML\x03\0\0\0".to_vec()).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
    let mut huge = b"GGUF".to_vec();
    huge.extend(3u32.to_le_bytes());
    huge.extend(u64::MAX.to_le_bytes());
    huge.extend(0u64.to_le_bytes());
    let err = GgufFile::parse(Path::new("b.gguf"), huge).unwrap_err();
    assert!(err.to_string().contains("tensor count"), "{err}");
    let unsupported = GgufWriter::new()
        .tensor("blk.0.q", &[32], GgmlType::Q8_0, vec![0; 34])
        .to_bytes();
    // Patch the type id (Q8_0 = 8) to Q4_K (12).
    let pos = unsupported
        .windows(8)
        .position(|w| w == [8, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let mut patched = unsupported.clone();
    patched[pos] = 12;
    let err = GgufFile::parse(Path::new("c.gguf"), patched).unwrap_err();
    assert!(err.to_string().contains("`blk.0.q` has type 12"), "{err}");
}

/// llama.cpp's name for a Hugging Face tensor name, and whether GGUF stores it transposed.
fn gguf_name(hf: &str, gpt2: bool) -> (String, bool) {
    let top = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
        ("transformer.wte.weight", "token_embd.weight"),
        ("transformer.wpe.weight", "position_embd.weight"),
        ("transformer.ln_f.weight", "output_norm.weight"),
        ("transformer.ln_f.bias", "output_norm.bias"),
    ];
    if let Some((_, g)) = top.iter().find(|(h, _)| *h == hf) {
        return (g.to_string(), false);
    }
    let rest = hf
        .strip_prefix(if gpt2 {
            "transformer.h."
        } else {
            "model.layers."
        })
        .unwrap();
    let (layer, rest) = rest.split_once('.').unwrap();
    let (part, suffix) = rest.rsplit_once('.').unwrap();
    let parts: &[(&str, &str, bool)] = &[
        ("input_layernorm", "attn_norm", false),
        ("self_attn.q_proj", "attn_q", false),
        ("self_attn.k_proj", "attn_k", false),
        ("self_attn.v_proj", "attn_v", false),
        ("self_attn.o_proj", "attn_output", false),
        ("self_attn.q_norm", "attn_q_norm", false),
        ("self_attn.k_norm", "attn_k_norm", false),
        ("post_attention_layernorm", "ffn_norm", false),
        ("self_attn.qkv_proj", "attn_qkv", false),
        ("mlp.gate_up_proj", "ffn_up", false),
        ("mlp.gate_proj", "ffn_gate", false),
        ("mlp.up_proj", "ffn_up", false),
        ("mlp.down_proj", "ffn_down", false),
        ("ln_1", "attn_norm", false),
        ("attn.c_attn", "attn_qkv", true),
        ("attn.c_proj", "attn_output", true),
        ("ln_2", "ffn_norm", false),
        ("mlp.c_fc", "ffn_up", true),
        ("mlp.c_proj", "ffn_down", true),
    ];
    let (_, g, t) = parts.iter().find(|(h, _, _)| *h == part).unwrap();
    (format!("blk.{layer}.{g}.{suffix}"), *t)
}

/// llama.cpp's q/k row permutation for interleaved RoPE.
fn permute_rows(t: &HostTensor, heads: usize) -> HostTensor {
    let rows = t.shape[0];
    let cols = t.data.len() / rows;
    let hd = rows / heads;
    let mut out = vec![0.0; t.data.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..hd / 2 {
                let src = h * hd + j * hd / 2 + i;
                let dst = h * hd + 2 * i + j;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&t.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor::new(t.shape.clone(), out)
}

/// Writes `model` as llama.cpp would convert it.
fn write_gguf(model: &Transformer, path: &Path) {
    write_gguf_with(model, path, &[]);
}

/// [`write_gguf`] with `extra` tensors under their GGUF names.
fn write_gguf_with(model: &Transformer, path: &Path, extra: &[(&str, HostTensor)]) {
    let c = &model.config;
    let gpt2 = c.model_type == ModelType::GPT2;
    let arch = c
        .model_type
        .gguf_name()
        .expect("a family llama.cpp converts");
    let key = |k: &str| format!("{arch}.{k}");
    let mut w = GgufWriter::new()
        .meta("general.architecture", MetaValue::String(arch.into()))
        .meta(&key("block_count"), MetaValue::U64(c.num_layers as u64))
        .meta(
            &key("context_length"),
            MetaValue::U64(c.max_position_embeddings as u64),
        )
        .meta(
            &key("embedding_length"),
            MetaValue::U64(c.hidden_size as u64),
        )
        .meta(
            &key("feed_forward_length"),
            MetaValue::U64(c.intermediate_size as u64),
        )
        .meta(
            &key("attention.head_count"),
            MetaValue::U64(c.num_heads as u64),
        )
        .meta(
            &key("attention.head_count_kv"),
            MetaValue::U64(c.num_kv_heads as u64),
        )
        .meta(&key("rope.freq_base"), MetaValue::F64(c.rope_theta))
        .meta(
            &key("attention.layer_norm_rms_epsilon"),
            MetaValue::F64(c.norm_eps),
        )
        .meta(
            &key("attention.layer_norm_epsilon"),
            MetaValue::F64(c.norm_eps),
        );
    if let Some(window) = c.sliding_window {
        w = w.meta(
            &key("attention.sliding_window"),
            MetaValue::U64(window as u64),
        );
    }
    w = tokenizer_metadata(w);
    for (name, t) in &model.to_tensor_map().tensors {
        let (g, transpose) = gguf_name(name, gpt2);
        let mut t = if transpose && t.shape.len() == 2 {
            t.transposed()
        } else {
            t.clone()
        };
        if c.model_type == ModelType::LLAMA && name.contains("q_proj") {
            t = permute_rows(&t, c.num_heads);
        } else if c.model_type == ModelType::LLAMA && name.contains("k_proj") {
            t = permute_rows(&t, c.num_kv_heads);
        }
        w = w.tensor_f32(&g, &t);
    }
    for (name, t) in extra {
        w = w.tensor_f32(name, t);
    }
    std::fs::write(path, w.to_bytes()).unwrap();
}

#[test]
fn gguf_model_loads_to_the_same_logits() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    // The families whose llama.cpp conversion keeps everything bpo computes (Mistral's is a
    // Llama without the window; Gemma 3's is not read).
    for arch in MODEL_TYPES
        .iter()
        .copied()
        .filter(|a| a.gguf_name() == Some(a.hf_name()))
    {
        let model = tiny_model(arch, 5, &device);
        let path = dir.path().join(format!("{arch:?}.gguf"));
        write_gguf(&model, &path);
        let (loaded, tok) = load(path.to_str().unwrap(), &device).unwrap();
        assert_eq!(loaded.config, model.config, "{arch:?}");
        assert_eq!(tok.vocab_size(), tokenizer().vocab_size());
        let (a, b) = (logits(&model), logits(&loaded));
        let diff = max_abs_diff(&a, &b);
        assert!(diff <= 1e-5, "{arch:?}: {diff}");
    }
}

#[test]
fn hf_directory_round_trip_is_exact() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for &arch in MODEL_TYPES {
        let model = tiny_model(arch, 6, &device);
        let out = dir.path().join(format!("{arch:?}"));
        save_hf(&out, &model, &tokenizer()).unwrap();
        for file in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            assert!(out.join(file).exists(), "{file}");
        }
        let (loaded, tok) = load(out.to_str().unwrap(), &device).unwrap();
        assert_eq!(loaded.config, model.config);
        assert_eq!(logits(&loaded), logits(&model), "{arch:?}");
        assert_eq!(tok.chat_template, tokenizer().chat_template);
        assert_eq!(tok.eos_id(), Some(2));
        // Saving the loaded model again gives the same tensors.
        let again = loaded.to_tensor_map().tensors;
        assert_eq!(again, model.to_tensor_map().tensors);
    }
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 7, &device);
    let mut map = model.to_tensor_map();
    map.tensors.remove("model.layers.1.mlp.up_proj.weight");
    let err = Transformer::from_tensor_map(&model.config, map, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing tensor `model.layers.1.mlp.up_proj.weight`"),
        "{err}"
    );
    let mut map = model.to_tensor_map();
    map.insert("model.norm.weight", HostTensor::new(vec![3], vec![1.0; 3]));
    let err = Transformer::from_tensor_map(&model.config, map, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`model.norm.weight` has shape [3]"), "{err}");
}

/// A tensor no parameter takes (the MLP biases of a Llama with `mlp_bias`) is refused by name
/// instead of dropped, from safetensors and from GGUF; the buffers old checkpoints carry are
/// not weights and load.
#[test]
fn checkpoint_tensors_that_no_parameter_takes_are_refused() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 7, &device);
    let mut map = model.to_tensor_map();
    let hidden = model.config.hidden_size;
    map.insert(
        "model.layers.0.mlp.down_proj.bias",
        HostTensor::new(vec![hidden], vec![0.5; hidden]),
    );
    let err = Transformer::from_tensor_map(&model.config, map, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`model.layers.0.mlp.down_proj.bias`") && err.contains("refused"),
        "{err}"
    );
    let mut map = model.to_tensor_map();
    map.insert(
        "model.layers.0.self_attn.rotary_emb.inv_freq",
        HostTensor::new(vec![8], vec![1.0; 8]),
    );
    Transformer::from_tensor_map(&model.config, map, &device).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let with_bias = dir.path().join("bias.gguf");
    let bias = HostTensor::new(vec![hidden], vec![0.5; hidden]);
    write_gguf_with(&model, &with_bias, &[("blk.0.ffn_down.bias", bias)]);
    let err = load(with_bias.to_str().unwrap(), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`blk.0.ffn_down.bias`") && err.contains("refused"),
        "{err}"
    );
}

#[test]
fn bad_model_specs_are_clear_errors() {
    let err = load("/no/such/model", &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no such file or directory"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path().to_str().unwrap(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no config.json"), "{err}");
    let file = dir.path().join("x.bin");
    std::fs::write(&file, b"not a model").unwrap();
    let err = load(file.to_str().unwrap(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not GGUF"), "{err}");
}

#[test]
fn sharded_safetensors_directory_loads() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 8, &device);
    let dir = tempfile::tempdir().unwrap();
    let map = model.to_tensor_map();
    let mut shards = [
        bpo_model::weights::TensorMap::new("shard1"),
        bpo_model::weights::TensorMap::new("shard2"),
    ];
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in map.tensors.iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        shards[i % 2].insert(name.clone(), t.clone());
        weight_map.insert(name.clone(), file.into());
    }
    for (i, shard) in shards.iter().enumerate() {
        let path = dir
            .path()
            .join(format!("model-0000{}-of-00002.safetensors", i + 1));
        bpo_model::weights::safetensors::write(&path, shard).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        model.config.to_hf_json().to_string(),
    )
    .unwrap();
    tokenizer().save(dir.path()).unwrap();
    let (loaded, _) = load(dir.path().to_str().unwrap(), &device).unwrap();
    assert_eq!(logits(&loaded), logits(&model));
}
