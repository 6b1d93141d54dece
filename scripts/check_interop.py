#!/usr/bin/env python3
"""Checks that bpo's outputs load in the Python tools people use with them.

    check_interop.py hf-model MODEL_DIR LOGITS_JSON
        transformers loads MODEL_DIR (AutoModelForCausalLM, float32, and AutoTokenizer) and
        reproduces the logits bpo wrote to LOGITS_JSON:
        {"cases": [{"ids": [...], "logits": [[... vocab ...], ... one per position], "text": optional}]}
        (with "text", the tokenizer must also encode it to "ids", without special tokens).

    check_interop.py peft BASE_DIR ADAPTER_DIR MERGED_DIR
        peft applies ADAPTER_DIR (PEFT layout: adapter_config.json, adapter_model.safetensors) to
        the base loaded from BASE_DIR; every adapter tensor must be loaded, and the adapted model
        must compute the logits of the merged model in MERGED_DIR.

    check_interop.py trl-pairs PAIR_JSONL [MODEL_DIR] [--steps N]
        datasets loads the pair file; prompt/chosen/rejected must be strings or chat message
        lists, of one kind; TRL's own preprocessing (maybe_extract_prompt,
        maybe_apply_chat_template, and DPOTrainer's dataset preparation) runs on it, then N
        (default 1) DPOTrainer steps. The tokenizer and model come from MODEL_DIR, or are a
        tiny local byte-level BPE and random Llama when it is not given.

Tolerance for logits: --atol (default 1e-4). Runs offline (no hub). Exit status 0 means passed.
Needs the venv of scripts/setup-venv.sh (torch, transformers, peft, datasets, trl).
"""
import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import warnings  # noqa: E402

import torch  # noqa: E402

# Deprecation notices from inside the libraries are not findings about bpo's files.
warnings.filterwarnings("ignore", category=FutureWarning)

ROLES = {"system", "user", "assistant", "tool"}


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def load_causal_lm(path: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@torch.no_grad()
def logits_of(model, ids: list[int]) -> torch.Tensor:
    return model(torch.tensor([ids], dtype=torch.long)).logits[0].float()


# ---------------------------------------------------------------------------------------- hf-model


def cmd_hf_model(args) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = load_causal_lm(args.model_dir)
    vocab = model.config.get_text_config().vocab_size
    cases = json.load(open(args.logits_json))["cases"]
    if not cases:
        fail(f"{args.logits_json} has no cases")
    worst = 0.0
    for n, case in enumerate(cases):
        ids = case["ids"]
        if not ids or max(ids) >= vocab or min(ids) < 0:
            fail(f"case {n}: ids empty or outside the vocabulary ({vocab})")
        text = case.get("text", case.get("prompt"))
        if isinstance(text, str):
            got = tok(text, add_special_tokens=False)["input_ids"]
            if got != ids:
                fail(f"case {n}: tokenizer encodes {text!r} to {got}, bpo to {ids}")
        want = torch.tensor(case["logits"], dtype=torch.float32)
        got = logits_of(model, ids)
        if tuple(want.shape) != tuple(got.shape):
            fail(f"case {n}: logits shape {tuple(want.shape)} in the file, {tuple(got.shape)} from transformers")
        diff = (got - want).abs().max().item()
        worst = max(worst, diff)
        print(f"case {n}: {len(ids)} tokens, max |logit diff| = {diff:.3e}")
    print(f"hf-model: {type(model).__name__} + {type(tok).__name__}, {len(cases)} cases, "
          f"max |transformers - bpo| = {worst:.3e} (atol {args.atol:g})")
    if not worst <= args.atol:
        fail(f"logits differ by {worst:.3e} > {args.atol:g}")


# -------------------------------------------------------------------------------------------- peft


def cmd_peft(args) -> None:
    from peft import PeftConfig, PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    config = PeftConfig.from_pretrained(args.adapter_dir)
    named = config.base_model_name_or_path
    if not (named and os.path.isdir(named)):
        print(f"adapter names base {named!r}, not a local directory: using {args.base_dir}")
    config.base_model_name_or_path = args.base_dir
    targets = sorted(getattr(config, 'target_modules', []) or [])
    print(f"adapter: {config.peft_type} r={getattr(config, 'r', '?')} "
          f"alpha={getattr(config, 'lora_alpha', '?')} targets={targets}")
    missing_modules = sorted(set(args.expect_modules) - set(targets))
    if missing_modules:
        fail(f"the adapter does not target {missing_modules}")

    base = load_causal_lm(args.base_dir)
    vocab = base.config.get_text_config().vocab_size
    gen = torch.Generator().manual_seed(0)
    sequences = [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in (1, 7, 19)]
    base_logits = [logits_of(base, ids) for ids in sequences]

    adapted = PeftModel.from_pretrained(base, args.adapter_dir, config=config).eval()
    # Every tensor of the file must have landed in a LoRA parameter: a name PEFT does not map
    # (e.g. a target module the architecture lacks) is otherwise only a warning.
    stored = load_file(os.path.join(args.adapter_dir, "adapter_model.safetensors"))
    # The LoRA parameters only: with `lm_head` among the targets PEFT would also count the
    # head's base weight ("embedding layers"), which an adapter file need not carry.
    loaded = get_peft_model_state_dict(adapted, save_embedding_layers=False)
    missing = sorted(set(stored) - set(loaded))
    if missing:
        fail(f"{len(missing)} adapter tensors were not loaded by peft, e.g. {missing[:3]}")
    unset = sorted(set(loaded) - set(stored))
    if unset:
        fail(f"{len(unset)} LoRA parameters of the peft model are not in the file, e.g. {unset[:3]}")
    for key, value in stored.items():
        if not torch.equal(loaded[key].float().cpu(), value.float()):
            fail(f"adapter tensor {key} differs after loading")
    print(f"peft loaded all {len(stored)} adapter tensors")

    adapted_logits = [logits_of(adapted, ids) for ids in sequences]
    merged = load_causal_lm(args.merged_dir)
    worst = effect = 0.0
    for ids, b, a in zip(sequences, base_logits, adapted_logits):
        m = logits_of(merged, ids)
        worst = max(worst, (a - m).abs().max().item())
        effect = max(effect, (a - b).abs().max().item())
    print(f"adapter effect: max |peft - base| = {effect:.3e}")
    if effect == 0.0:
        print("warning: the adapter does not change the base's logits (untrained, lora_B = 0?)")
    print(f"peft: {len(sequences)} sequences, max |peft(base + adapter) - merged| = {worst:.3e} (atol {args.atol:g})")
    if not worst <= args.atol:
        fail(f"merged model differs from base + adapter by {worst:.3e} > {args.atol:g}")


# --------------------------------------------------------------------------------------- trl-pairs


def kind_of(value, where: str) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, list) and value:
        for m in value:
            if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
                fail(f"{where}: not a chat message (role in {sorted(ROLES)}, content string): {m!r}")
        return "chat"
    fail(f"{where}: neither a string nor a non-empty list of chat messages: {value!r}")


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def local_tokenizer(texts: list[str]):
    """A byte-level BPE trained on the pairs themselves, with a ChatML template: no hub needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<|im_end|>",
                                   bos_token=None, chat_template=CHATML)


def tiny_llama(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(config)


def texts_of(value) -> list[str]:
    return [value] if isinstance(value, str) else [m["content"] for m in value]


def cmd_trl_pairs(args) -> None:
    import datasets
    import trl
    from trl import DPOConfig, DPOTrainer
    from trl.data_utils import is_conversational, maybe_apply_chat_template, maybe_extract_prompt

    datasets.disable_progress_bars()
    work = tempfile.mkdtemp(prefix="bpo-trl-")
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    ds = datasets.load_dataset("json", data_files=args.pair_jsonl, split="train", cache_dir=os.path.join(work, "cache"))
    print(f"datasets {datasets.__version__}: {len(ds)} rows, columns {ds.column_names}")
    for col in ("prompt", "chosen", "rejected"):
        if col not in ds.column_names:
            fail(f"column {col!r} missing (columns: {ds.column_names})")
        print(f"  {col}: {ds.features[col]}")
    for col in ds.column_names:
        if col not in ("prompt", "chosen", "rejected"):
            print(f"  extra column {col}: {ds.features[col]}")
    if len(ds) == 0:
        fail("no rows")

    kinds = set()
    texts = []
    for i, row in enumerate(ds):
        row_kinds = {kind_of(row[c], f"row {i} {c}") for c in ("prompt", "chosen", "rejected")}
        if len(row_kinds) != 1:
            fail(f"row {i}: prompt/chosen/rejected mix strings and chat messages, TRL concatenates them")
        kinds |= row_kinds
        if "chat" in row_kinds:
            if row["prompt"][-1]["role"] not in ("user", "tool"):
                fail(f"row {i}: the prompt's last message is {row['prompt'][-1]['role']!r}, not user")
            for c in ("chosen", "rejected"):
                if [m["role"] for m in row[c]] != ["assistant"]:
                    fail(f"row {i}: {c} must be one assistant message, got roles {[m['role'] for m in row[c]]}")
        conv = is_conversational(row)
        if conv != ("chat" in row_kinds):
            fail(f"row {i}: trl.is_conversational says {conv}")
        if maybe_extract_prompt(row) is not row:
            fail(f"row {i}: trl.maybe_extract_prompt would re-extract the prompt (prompt not recognised)")
        for c in ("prompt", "chosen", "rejected"):
            texts += texts_of(row[c])
    if len(kinds) != 1:
        fail("rows mix plain-text and conversational pairs; TRL decides the format from the first row")
    kind = kinds.pop()
    print(f"format: {'conversational' if kind == 'chat' else 'standard (plain text)'}, checked on all {len(ds)} "
          f"rows: is_conversational, maybe_extract_prompt (prompt kept as given)")

    if args.model_dir:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.model_dir)
        model = load_causal_lm(args.model_dir)
        where = args.model_dir
    else:
        # Saved and loaded back: DPOTrainer builds its reference model from the model's path.
        tiny = os.path.join(work, "tiny")
        tok = local_tokenizer(texts)
        tiny_llama(tok).save_pretrained(tiny)
        tok.save_pretrained(tiny)
        model = load_causal_lm(tiny)
        where = "local byte-level BPE + random 2-layer Llama"
    if kind == "chat" and not tok.chat_template:
        fail("conversational pairs need a tokenizer with a chat template")
    if tok.eos_token is None:
        fail("the tokenizer has no eos token (DPOTrainer appends it to plain-text responses)")

    rendered = [maybe_apply_chat_template(row, tok) for row in ds]
    for i, r in enumerate(rendered):
        for c in ("prompt", "chosen", "rejected"):
            if not isinstance(r[c], str) or (c != "prompt" and not r[c]):
                fail(f"row {i}: maybe_apply_chat_template gave {c} = {r[c]!r}")
    print(f"maybe_apply_chat_template: ok on all rows; row 0 -> {json.dumps({c: rendered[0][c] for c in ('prompt', 'chosen')})[:200]}")

    n = len(ds)
    config = DPOConfig(output_dir=os.path.join(work, "out"), max_steps=args.steps, per_device_train_batch_size=min(2, n),
                       learning_rate=1e-4, report_to="none", save_strategy="no", logging_steps=1, use_cpu=True,
                       max_length=args.max_length, disable_tqdm=True, seed=0)
    trainer = DPOTrainer(model=model, args=config, train_dataset=ds, processing_class=tok)
    prepared = trainer.train_dataset
    print(f"DPOTrainer ({trl.__version__}, tokenizer: {where}) prepared columns: {prepared.column_names}")
    for c in ("prompt_ids", "chosen_ids", "rejected_ids"):
        if c not in prepared.column_names:
            fail(f"DPOTrainer did not produce {c}")
    for i, row in enumerate(prepared):
        if not row["chosen_ids"] or not row["rejected_ids"]:
            fail(f"row {i}: empty chosen or rejected tokens after DPOTrainer's preparation")
    if len(prepared) < n:
        print(f"note: DPOTrainer dropped {n - len(prepared)} rows whose prompt fills max_length={args.max_length}")
    extra = [c for c in ds.column_names if c not in ("prompt", "chosen", "rejected")]
    if extra:
        print(f"extra columns {extra}: kept by the preparation, dropped by the Trainer before batching "
              f"(remove_unused_columns={config.remove_unused_columns})")
    if args.steps > 0:
        out = trainer.train()
        logs = [h for h in trainer.state.log_history if "loss" in h]
        loss = logs[-1]["loss"] if logs else out.training_loss
        if not (isinstance(loss, float) and loss == loss and abs(loss) != float("inf")):
            fail(f"DPOTrainer loss is not finite: {loss}")
        print(f"DPOTrainer trained {trainer.state.global_step} step(s): loss {loss:.4f}")
    print(f"trl-pairs: ok ({n} pairs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("hf-model")
    p.add_argument("model_dir")
    p.add_argument("logits_json")
    p.add_argument("--atol", type=float, default=1e-4)
    p.set_defaults(run=cmd_hf_model)
    p = sub.add_parser("peft")
    p.add_argument("base_dir")
    p.add_argument("adapter_dir")
    p.add_argument("merged_dir")
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--expect-modules", nargs="*", default=[],
                   help="module names the adapter must target (e.g. lm_head)")
    p.set_defaults(run=cmd_peft)
    p = sub.add_parser("trl-pairs")
    p.add_argument("pair_jsonl")
    p.add_argument("model_dir", nargs="?")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--max-length", type=int, default=1024)
    p.set_defaults(run=cmd_trl_pairs)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    args.run(args)


if __name__ == "__main__":
    main()
