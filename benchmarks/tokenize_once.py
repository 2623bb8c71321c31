"""The share of a cold encoding run spent tokenizing, with every text tokenized twice (before) and once (now).

Before: a tokenizer pass for lengths and truncation counts, then ``SentenceTransformer.encode`` tokenized
each batch again. Now: one pass whose ids feed the model (``hnmine.engines.encoder.TokenizedTexts``). Both runs
encode the same SciFact passages cold (no cache), alternated, ``--repeats`` times each; medians are printed,
with the tokenizing seconds measured inside the same runs (first pass, plus each batch's tokenization inside
``encode`` for the twice path, timed by wrapping the model's ``preprocess``). The embeddings are checked to be
identical. On a CPU the model dominates; on a GPU the model is ~50x faster and the same tokenizing seconds
become a large share, which is the point of tokenizing once.

    .venv/bin/python benchmarks/tokenize_once.py --docs 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import hnmine.engines.encoder as encoder_module  # noqa: E402
from hnmine.engines.encoder import Encoder, load_sentence_transformer, resolve_dtype  # noqa: E402

DEFAULT_DIR = REPO.parent / "shared" / "datasets" / "scifact"


def run(texts: list[str], once: bool, dtype: str, batch_size: int) -> tuple[np.ndarray, dict]:
    model = load_sentence_transformer("all-MiniLM-L6-v2", None, dtype)
    inner = {"seconds": 0.0}
    original_preprocess = model.preprocess
    original_build = encoder_module.TokenizedTexts.build

    def timed_preprocess(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original_preprocess(*args, **kwargs)
        finally:
            inner["seconds"] += time.perf_counter() - start

    model.preprocess = timed_preprocess
    if not once:
        encoder_module.TokenizedTexts.build = classmethod(lambda cls, *a, **k: None)
    try:
        encoder = Encoder(dtype=dtype, batch_size=batch_size, use_cache=False, show_progress=False)
        start = time.perf_counter()
        emb = encoder.encode(texts)
        total = time.perf_counter() - start
    finally:
        del model.preprocess
        encoder_module.TokenizedTexts.build = original_build
    # Once: the first pass and the padding (tokenize_seconds; it includes the first batch's check against
    # preprocess). Twice: the lengths pass plus every preprocess call inside encode.
    tokenize = encoder.tokenize_seconds + (0.0 if once else inner["seconds"])
    return emb, {"total_s": total, "tokenize_s": tokenize, "share": tokenize / total,
                 "tokenized_once": encoder.tokenized_once}


def tokenizer_only(texts: list[str], dtype: str, batch_size: int, repeats: int) -> dict:
    """The tokenizing work alone, without the model: what the GPU waits on while the CPU tokenizes.

    once: ``TokenizedTexts.build`` (one pass, truncated ids and overflow), the first batch's check against the
    model's ``preprocess``, and padding every batch. twice: ``token_lengths`` (untruncated pass) then the model's
    ``preprocess`` for every batch, as ``encode`` does. Same length order and batches; alternated repeats.
    """
    from hnmine.engines.encoder import TokenizedTexts, token_lengths

    model = load_sentence_transformer("all-MiniLM-L6-v2", None, dtype)
    limit = model.max_seq_length

    def once() -> None:
        tokens = TokenizedTexts.build(model, texts, limit)
        order = np.argsort(-tokens.lengths, kind="stable")
        tokens.matching_extras(model, order[:batch_size], [texts[i] for i in order[:batch_size]], "")
        for start in range(0, len(texts), batch_size):
            tokens.features(order[start:start + batch_size])

    def twice() -> None:
        order = np.argsort(-np.minimum(token_lengths(model, texts), limit), kind="stable")
        for start in range(0, len(texts), batch_size):
            model.preprocess([texts[i] for i in order[start:start + batch_size]])

    seconds: dict[str, list[float]] = {"once": [], "twice": []}
    for rep in range(repeats):
        for name, func in ((("once", once), ("twice", twice)) if rep % 2 == 0 else (("twice", twice), ("once", once))):
            start = time.perf_counter()
            func()
            seconds[name].append(time.perf_counter() - start)
    return {"seconds": seconds, "median_once_s": statistics.median(seconds["once"]),
            "median_twice_s": statistics.median(seconds["twice"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tokenizer-docs", type=int, default=2000,
                        help="passages for the tokenizer-only comparison (no model, so it can be larger)")
    parser.add_argument("--tokenizer-only", action="store_true", help="skip the cold encoding runs")
    args = parser.parse_args(argv)

    with (args.scifact / "corpus.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    texts = [f"{r.get('title', '')} {r['text']}".strip() for r in rows[: args.docs]]
    dtype = resolve_dtype(args.dtype, None)
    tok_texts = [f"{r.get('title', '')} {r['text']}".strip() for r in rows[: args.tokenizer_docs]]
    tok = tokenizer_only(tok_texts, dtype, args.batch_size, args.repeats)
    print(f"tokenizing only, {len(tok_texts):,} passages, {args.repeats} alternated repeats: once "
          f"{tok['median_once_s']:.2f} s, twice {tok['median_twice_s']:.2f} s, once/twice "
          f"{tok['median_once_s'] / tok['median_twice_s']:.2f}x (runs: {tok['seconds']})", flush=True)
    if args.tokenizer_only:
        if args.json:
            args.json.write_text(json.dumps({"tokenizer_only": tok, "tokenizer_docs": len(tok_texts)}, indent=2)
                                 + "\n", encoding="utf-8")
        return 0
    load_sentence_transformer("all-MiniLM-L6-v2", None, dtype)  # loading is not what is measured
    results: dict[str, list[dict]] = {"twice": [], "once": []}
    embeddings = {}
    for rep in range(args.repeats):
        for mode in (("twice", "once") if rep % 2 == 0 else ("once", "twice")):
            emb, stats = run(texts, mode == "once", dtype, args.batch_size)
            embeddings[mode] = emb
            results[mode].append(stats)
            print(f"repeat {rep + 1} {mode:>5}: total {stats['total_s']:.2f} s, tokenizing {stats['tokenize_s']:.2f} s "
                  f"({100 * stats['share']:.1f} %)", flush=True)
    identical = bool(np.array_equal(embeddings["once"], embeddings["twice"]))
    summary = {mode: {key: statistics.median(r[key] for r in runs) for key in ("total_s", "tokenize_s", "share")}
               for mode, runs in results.items()}
    print()
    print(f"{len(texts):,} SciFact passages, {dtype}, batch {args.batch_size}, cold (no cache); medians of "
          f"{args.repeats} alternated repeats")
    for mode in ("twice", "once"):
        s = summary[mode]
        print(f"  tokenized {mode:>5}: total {s['total_s']:.2f} s, tokenizing {s['tokenize_s']:.2f} s "
              f"= {100 * s['share']:.1f} % of the run")
    print(f"  tokenizing seconds once/twice: {summary['once']['tokenize_s'] / summary['twice']['tokenize_s']:.2f}x; "
          f"total once/twice: {summary['once']['total_s'] / summary['twice']['total_s']:.3f}x; "
          f"identical embeddings: {identical}")
    if args.json:
        args.json.write_text(json.dumps({"docs": len(texts), "dtype": dtype, "repeats": args.repeats,
                                         "runs": results, "median": summary, "identical": identical,
                                         "tokenizer_only": tok, "tokenizer_docs": len(tok_texts)}, indent=2)
                             + "\n", encoding="utf-8")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
