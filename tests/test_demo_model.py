"""The embedded demo model and the training/evaluation scripts (a micro run; the full run is not for CI)."""

from __future__ import annotations

import json
import os
import time

import torch

import ledviz
from ledviz.pipeline import default_model_dir, load_model, prepare_document, run

MODEL_DIR = os.path.join(os.path.dirname(ledviz.__file__), "demo", "model")


def test_embedded_checkpoint_is_complete_and_small():
    files = set(os.listdir(MODEL_DIR))
    for name in ("config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
                 "tokenizer.json", "README.md"):
        assert name in files, f"{name} missing from the embedded model"
    size = sum(os.path.getsize(os.path.join(MODEL_DIR, f)) for f in files)
    assert size < 25e6, f"embedded model is {size / 1e6:.1f} MB"
    assert os.path.samefile(default_model_dir(), MODEL_DIR) or os.environ.get("LEDVIZ_MODEL")


def test_embedded_checkpoint_loads_in_ledviz_and_transformers():
    import transformers

    t = time.perf_counter()
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(MODEL_DIR)
    load_s = time.perf_counter() - t
    theirs = transformers.LEDForConditionalGeneration.from_pretrained(MODEL_DIR).eval()
    tok = ledviz.LEDTokenizerFast.from_pretrained(MODEL_DIR)
    ref_tok = transformers.LEDTokenizerFast.from_pretrained(MODEL_DIR)
    text = "The project lead is Maren Okafor. The site is located in Velmora."
    enc = tok(text, return_tensors="pt")
    assert enc["input_ids"].tolist() == ref_tok(text, return_tensors="pt")["input_ids"].tolist()
    gm = torch.zeros_like(enc["input_ids"])
    gm[0, 0] = 1
    with torch.no_grad():
        a = ours(enc["input_ids"], global_attention_mask=gm).logits
        b = theirs(enc["input_ids"], global_attention_mask=gm).logits
    assert (a - b).abs().max() < 1e-4
    assert load_s < 30  # generous: CI machines are shared (about 1 s when idle)


def test_embedded_model_runs_a_sample_document_end_to_end():
    from ledviz.demo.data import sample_documents

    loaded = load_model(None)
    title, text = next(iter(sample_documents().items()))
    doc = prepare_document(loaded, text)
    result = run(loaded, doc, max_new_tokens=8)
    assert result.output_ids[0] == loaded.config.decoder_start_token_id
    assert len(result.layers) == loaded.config.encoder_layers
    assert result.cross_attentions[0].shape[-1] == doc.n_tokens


def test_micro_training_run_and_evaluation(tmp_path):
    from ledviz.demo import evaluate, train

    out = tmp_path / "micro"
    result = train.main(["--micro", "--out", str(out), "--steps", "4", "--eval-every", "4"])
    assert result["step"] == 4
    assert (out / "model.safetensors").exists() and (out / "vocab.json").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log) and any("eval" in r for r in log)
    model = ledviz.LEDForConditionalGeneration.from_pretrained(out)
    assert model.config.encoder_layers >= 1
    scores = evaluate.main(["--model", str(out), "--n", "1", "--lengths", "300"])
    assert scores["timing"]["new_tokens"] == 64 and scores["timing"]["summarize_s"] > 0
    assert scores, "evaluate printed no scores"
