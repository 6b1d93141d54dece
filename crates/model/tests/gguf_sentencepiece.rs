//! SentencePiece vocabularies of Llama-family and Phi-3 GGUF files, against transformers
//! reading the same files (`scripts/gguf_sentencepiece.py`: a tiny vocabulary in llama.cpp's
//! layout whose scores are not in file order): the same tokenizer (vocabulary, merges in order,
//! normaliser, pre-tokeniser, decoder, added tokens), and transformers' ids with and without
//! special tokens and decodings of texts with merges, byte fallback, leading and repeated
//! spaces, control and user-defined tokens. Gemma's is in `gemma3_gguf.rs`. Runs with
//! `BPO_PYTHON` set to a Python with transformers and gguf (CI's venv).

mod common;

use bpo_model::tokenizer::Tokenizer;
use bpo_model::weights::gguf::GgufFile;

#[test]
fn llama_and_phi3_sentencepiece_gguf_tokenizers_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(reference) = common::build_reference("gguf_sentencepiece.py", dir.path()) else {
        return;
    };
    for arch in ["llama", "phi3"] {
        let expected = &reference[arch];
        let path = dir.path().join(expected["gguf"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        let tokenizer = Tokenizer::from_gguf(&GgufFile::parse(&path, bytes).unwrap()).unwrap();
        common::assert_same_tokenizer(&tokenizer, &expected["tokenizer"], arch);
        common::assert_same_encodings(&tokenizer, &expected["texts"], arch);
    }
}
