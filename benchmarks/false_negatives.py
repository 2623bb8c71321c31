"""The false-negative / hardness frontier: how many emitted negatives are secretly relevant, at what hardness.

Two settings, one point per recipe in each:

* **NFCorpus dev, one known positive per query.** Dev's labels are dense (35.7 relevant documents per query).
  Each query keeps one positive (the highest grade; ties broken with a fixed seed); the miner sees only it,
  and an emitted negative is *false* when dev's labels mark it (or an exact-text twin of it) relevant.
* **SciFact train, hide-fraction probe.** Half of the positives of each query with several are hidden; an
  emitted negative is false when it is a hidden positive. Few SciFact queries have several positives, so
  its rates rest on few cases (the table gives the counts).

Per recipe: false-negative rate of the distinct emitted (query, negative) pairs, hardness (mean rank of the
negatives in the mining model's full ranking of the corpus with the known positive removed, 1 = closest,
and the mean cosine gap ``cos(q, positive) - cos(q, negative)`` under the same model, negative = harder),
the share of queries left short of the target count, and teacher cost (pairs scored, seconds).

Recipes are ``Recipe`` objects in ``RECIPES``: hnmine pipelines built from ``MineOptions`` (or any stage
list), and ``sentence-transformers``' ``mine_hard_negatives`` at its defaults, run for real (its output is
kept in ``--work-dir`` and reused). To add points (a teacher with a threshold rule), build more ``Recipe``
objects and pass them to ``main(extra_recipes=...)``, or append to ``RECIPES``.

    python benchmarks/false_negatives.py --nfcorpus ../shared/datasets/nfcorpus --scifact ../shared/datasets/scifact
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hnmine.data import MiningData  # noqa: E402
from hnmine.engines.encoder import Encoder  # noqa: E402
from hnmine.io.inputs import load_beir, read_beir  # noqa: E402
from hnmine.pipeline import Pipeline  # noqa: E402
from hnmine.recipe import MineOptions, build_pipeline  # noqa: E402
from hnmine.stages.hidden_positives import hide_positives  # noqa: E402

NUM_NEGATIVES = 5


# ------------------------------------------------------------------------------------------------ settings


@dataclass
class Setting:
    """Mining data as the miner sees it, and the truth it is judged against."""

    name: str
    data: MiningData                      # known positives only
    relevant: set[tuple[int, int]]        # (query, doc) pairs that count as false negatives when emitted
    query_emb: np.ndarray = field(repr=False, default=None)
    doc_emb: np.ndarray = field(repr=False, default=None)

    def embed(self) -> None:
        """The mining model's embeddings (the bundled MiniLM, hnmine's default precision, cached)."""
        encoder = Encoder(show_progress=False)
        self.doc_emb = encoder.encode(self.data.doc_texts)
        self.query_emb = encoder.encode(self.data.query_texts)

    def hardness(self, query_idx: np.ndarray, doc_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rank (1 = closest non-positive document) and gap ``cos(q, p) - cos(q, n)`` of each pair."""
        ranks = np.zeros(len(query_idx), dtype=np.int64)
        gaps = np.zeros(len(query_idx))
        keys = self.data.doc_keys
        for q in np.unique(query_idx):
            rows = np.flatnonzero(query_idx == q)
            scores = self.doc_emb @ self.query_emb[q]
            positives = self.data.positives_of(int(q))
            excluded = np.isin(keys, keys[positives])        # known positives and their exact-text twins
            valid = scores[~excluded]
            cand = scores[doc_idx[rows]]
            ranks[rows] = 1 + (valid[None, :] > cand[:, None]).sum(axis=1)
            gaps[rows] = scores[positives].min() - cand
        return ranks, gaps

    def text_hardness(self, query_idx: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``hardness`` for passages outside the corpus (synthetic negatives), encoded by the same model."""
        emb = Encoder(show_progress=False, use_cache=False).encode(texts) if texts else np.zeros((0, 1))
        ranks = np.zeros(len(query_idx), dtype=np.int64)
        gaps = np.zeros(len(query_idx))
        keys = self.data.doc_keys_of(np.arange(self.data.corpus_size))
        for i, q in enumerate(query_idx.tolist()):
            scores = self.doc_emb[:len(keys)] @ self.query_emb[q]
            positives = self.data.positives_of(q)
            cand = float(emb[i] @ self.query_emb[q])
            ranks[i] = 1 + int((scores[~np.isin(keys, keys[positives])] > cand).sum())
            gaps[i] = scores[positives].min() - cand
        return ranks, gaps


def _with_twins(data: MiningData, pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """A document with the same normalised text as a relevant one is relevant too (NFCorpus has 40 such pairs)."""
    keys = data.doc_keys
    by_key: dict[int, list[int]] = {}
    for i, k in enumerate(keys.tolist()):
        by_key.setdefault(k, []).append(i)
    return {(q, t) for q, d in pairs for t in by_key[int(keys[d])]}


def nfcorpus_one_positive(root: str | Path, split: str = "dev", seed: int = 0) -> Setting:
    """One positive per query: the highest grade, ties broken by ``default_rng([seed, query])``."""
    full = load_beir(root, split)
    _, _, qrels = read_beir(root, split)
    grade = {(q, d): s for q, d, s in zip(*(qrels.column(c).to_pylist() for c in ("query_id", "doc_id", "score")))}
    kept, relevant = [], set()
    for q, qid in enumerate(full.query_ids):
        positives = full.positives_of(q)
        grades = np.array([grade[(qid, full.doc_ids[d])] for d in positives])
        best = positives[grades == grades.max()]
        kept.append((q, int(np.random.default_rng([seed, q]).choice(best))))
        relevant.update((q, int(d)) for d in positives)
    data = MiningData.from_pairs(full.query_ids, full.query_texts, full.doc_ids, full.doc_texts, kept, full.source)
    return Setting(f"NFCorpus {split}, one known positive", data, _with_twins(data, relevant))


def scifact_hidden(root: str | Path, fraction: float = 0.5, seed: int = 0) -> Setting:
    full = load_beir(root, "train")
    data, hidden = hide_positives(full, fraction, seed)
    return Setting(f"SciFact train, {fraction:.0%} of multi-positive queries' positives hidden", data,
                   _with_twins(data, hidden))


# ------------------------------------------------------------------------------------------------ recipes


@dataclass
class Mined:
    query_idx: np.ndarray
    doc_idx: np.ndarray
    seconds: float
    pairs_scored: int = 0
    synthetic: dict[int, str] = field(default_factory=dict)  # doc_idx -> text, for generated (not corpus) negatives
    relabeled: tuple[np.ndarray, np.ndarray] | None = None  # (query_idx, doc_idx) written as extra positives


@dataclass
class Recipe:
    """One point of the frontier. ``options`` builds an hnmine pipeline; ``run`` mines any other way."""

    name: str
    family: str
    options: dict | None = None
    pipeline: Callable[[], Pipeline] | None = None
    run: Callable[[Setting, Path], Mined] | None = None

    def mine(self, setting: Setting, work_dir: Path) -> Mined:
        if self.run is not None:
            return self.run(setting, work_dir)
        pipeline = self.pipeline() if self.pipeline else build_pipeline(
            MineOptions(**{"num_negatives": NUM_NEGATIVES, **(self.options or {})}),
            max_positives=int(setting.data.positive_counts.max()))
        start = time.perf_counter()
        batches = list(pipeline.run(setting.data))
        seconds = time.perf_counter() - start
        pipeline.collect_notes()
        cand = [b.candidates for b in batches]
        q = np.concatenate([c.column("query_idx").to_numpy() for c in cand])
        d = np.concatenate([c.column("doc_idx").to_numpy() for c in cand])
        pairs = sum(int(v) for k, v in pipeline.report.notes.items() if "pair evaluations" in k)
        extra = [b.relabeled for b in batches if b.relabeled is not None]
        relabeled = (np.concatenate([t.column("query_idx").to_numpy() for t in extra]),
                     np.concatenate([t.column("doc_idx").to_numpy() for t in extra])) if extra else None
        return Mined(q, d, seconds, pairs, relabeled=relabeled)


def sentence_transformers_recipe(name: str, **kwargs) -> Recipe:
    """``sentence_transformers.util.mine_hard_negatives`` itself, with ``kwargs`` over its defaults."""

    def run(setting: Setting, work_dir: Path) -> Mined:
        tag = "".join(c if c.isalnum() else "_" for c in f"{setting.name}_{name}")
        saved = work_dir / f"st_{tag}.json"
        if saved.exists():
            kept = json.loads(saved.read_text())
            return Mined(np.array(kept["q"], np.int64), np.array(kept["d"], np.int64), kept["seconds"])
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.util import mine_hard_negatives

        from hnmine.engines.encoder import resolve_model

        data = setting.data
        anchors, positives = [], []
        for q in range(data.num_queries):
            for d in data.positives_of(q):
                anchors.append(data.query_texts[q])
                positives.append(data.doc_texts[int(d)])
        model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
        start = time.perf_counter()
        out = mine_hard_negatives(Dataset.from_dict({"anchor": anchors, "positive": positives}), model,
                                  corpus=list(data.doc_texts), verbose=False,
                                  cache_folder=str(work_dir / "st-embeddings"), **kwargs)
        seconds = time.perf_counter() - start
        query_of = {}
        for q, t in enumerate(data.query_texts):
            query_of.setdefault(t, q)
        doc_of = {}
        for i, t in enumerate(data.doc_texts):
            doc_of.setdefault(t, i)
        q = [query_of[a] for a in out["anchor"]]
        d = [doc_of[n] for n in out["negative"]]
        work_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"q": q, "d": d, "seconds": seconds, "kwargs": kwargs}))
        return Mined(np.array(q, np.int64), np.array(d, np.int64), seconds)

    return Recipe(name, "peer", run=run)


DEFAULTS_NAME = "hnmine defaults (dense 11-50)"
SIBLINGS = {"sibling_percentile": 60.0, "sibling_pool": 100, "lexical_top": 100}

RECIPES: list[Recipe] = [
    sentence_transformers_recipe("sentence-transformers defaults (3 negatives, ranks 1-N)"),
    sentence_transformers_recipe("sentence-transformers, 5 negatives, range 0-50", num_negatives=5, range_max=50),
    Recipe(DEFAULTS_NAME, "window", {}),
    Recipe("dense 1-50", "window", {"range_min": 0, "range_max": 50}),
    Recipe("dense 31-100", "window", {"range_min": 30, "range_max": 100}),
    Recipe("dense 51-150", "window", {"range_min": 50, "range_max": 150}),
    Recipe("BM25 11-50", "retriever", {"retriever": "bm25"}),
    Recipe("hybrid 11-50", "retriever", {"retriever": "hybrid"}),
    Recipe("SimANS dense 1-50", "sampling", {"range_min": 0, "range_max": 50, "sampling": "simans"}),
    Recipe("max-ratio 0.95 dense 1-50", "bi-encoder filter", {"range_min": 0, "range_max": 50, "max_ratio": 0.95}),
    Recipe("siblings p60 + lexical 100, dense 1-100", "no-teacher",
           {"range_min": 0, "range_max": 100, **SIBLINGS}),
    Recipe("siblings p50 + lexical 100, dense 1-100", "no-teacher",
           {"range_min": 0, "range_max": 100, **SIBLINGS, "sibling_percentile": 50.0}),
    Recipe("siblings p40 + lexical 100, dense 1-100", "no-teacher",
           {"range_min": 0, "range_max": 100, **SIBLINGS, "sibling_percentile": 40.0}),
    Recipe("siblings p50 + lexical 50, dense 1-100", "no-teacher",
           {"range_min": 0, "range_max": 100, **SIBLINGS, "sibling_percentile": 50.0, "lexical_top": 50}),
    Recipe("siblings p60 only, dense 1-100", "no-teacher",
           {"range_min": 0, "range_max": 100, **SIBLINGS, "lexical_top": None}),
    Recipe("lexical 100 only, dense 1-100", "no-teacher",
           {"range_min": 0, "range_max": 100, **SIBLINGS, "sibling_percentile": None}),
    Recipe("siblings p60 + lexical 100, dense 6-100", "no-teacher",
           {"range_min": 5, "range_max": 100, **SIBLINGS}),
]


PER_QUERY_RULES = {"max-z 1.5": {"max_z": 1.5}, "max-z 1.0": {"max_z": 1.0},
                   "spread-margin 0.5": {"spread_margin": 0.5}}
RECIPES += [Recipe(f"{name} on the cosine (per query), dense 1-50", "bi-encoder filter",
                   {"range_min": 0, "range_max": 50, **rule}) for name, rule in PER_QUERY_RULES.items()]


def teacher_recipes(model: str, ce_max_length: int = 128) -> list[Recipe]:
    """A cross-encoder teacher (e.g. from ``hnmine train-denoiser``) with each per-query and positive-relative rule,
    on ranks 1-50 and on the default window."""
    rules = {**PER_QUERY_RULES, "max-ratio 0.95": {"max_ratio": 0.95}}
    return [Recipe(f"teacher {Path(model).name}, {name}, dense {lo + 1}-{hi}", "teacher",
                   {"range_min": lo, "range_max": hi, "cross_encoder": model, "ce_max_length": ce_max_length, **rule})
            for name, rule in rules.items() for lo, hi in ((0, 50), (10, 50))]


def label_graph_recipes(nfcorpus: str | Path) -> list[Recipe]:
    """The label-graph teacher (``--label-graph-queries/--label-graph-qrels``) with NFCorpus **train** as the
    labelled set: on ranks 1-50 at two thresholds, and added to hnmine's defaults. NFCorpus dev only (the labelled
    set must describe the mined corpus)."""
    root = Path(nfcorpus)
    labelled = {"label_graph_queries": str(root / "queries.jsonl"), "label_graph_qrels": str(root / "qrels-train.tsv")}
    return [Recipe("label graph 0.25, dense 1-50", "label graph", {"range_min": 0, "range_max": 50, **labelled}),
            Recipe("label graph 0.1, dense 1-50", "label graph",
                   {"range_min": 0, "range_max": 50, **labelled, "label_graph_max_probability": 0.1}),
            Recipe("hnmine defaults + label graph 0.25", "label graph", dict(labelled))]


# ------------------------------------------------------------------------------------------------ measuring


def measure(recipe: Recipe, setting: Setting, work_dir: Path) -> dict:
    mined = recipe.mine(setting, work_dir)
    pairs = np.unique(np.stack([mined.query_idx, mined.doc_idx], axis=1), axis=0) if len(mined.query_idx) else (
        np.zeros((0, 2), np.int64))
    q, d = pairs[:, 0], pairs[:, 1]
    is_fn = np.fromiter(((a, b) in setting.relevant for a, b in zip(q.tolist(), d.tolist())), bool, count=len(q))
    # Labels cannot judge a generated passage: synthetic negatives are left out of the FN rate (counted apart)
    # and measured for hardness from their text.
    syn = np.isin(d, list(mined.synthetic)) if mined.synthetic else np.zeros(len(q), dtype=bool)
    ranks, gaps = np.zeros(len(q), dtype=np.int64), np.zeros(len(q))
    ranks[~syn], gaps[~syn] = setting.hardness(q[~syn], d[~syn])
    ranks[syn], gaps[syn] = setting.text_hardness(q[syn], [mined.synthetic[int(i)] for i in d[syn]])
    per_query = np.bincount(q, minlength=setting.data.num_queries)
    per_query_fn = np.bincount(q[is_fn], minlength=setting.data.num_queries)
    judged = len(q) - int(syn.sum())
    return {
        "_per_query": (per_query_fn, np.bincount(q[~syn], minlength=setting.data.num_queries)),
        "synthetic": int(syn.sum()),
        "recipe": recipe.name, "family": recipe.family, "negatives": len(q), "false_negatives": int(is_fn.sum()),
        "fn_rate": float(is_fn.sum() / judged) if judged else None,
        "mean_rank": float(ranks.mean()) if len(q) else None,
        "median_rank": float(np.median(ranks)) if len(q) else None,
        "mean_gap": float(gaps.mean()) if len(q) else None,
        "short_share": float((per_query < NUM_NEGATIVES).mean()),
        "queries_without": int((per_query == 0).sum()),
        "pairs_scored": mined.pairs_scored, "seconds": round(mined.seconds, 2),
    }


BOOTSTRAP = 2000


def add_intervals(rows: list[dict], baseline: str, seed: int = 0) -> None:
    """95 % bootstrap intervals over queries for each FN rate, and for its paired difference from ``baseline``.

    Queries are resampled (the same resamples for every recipe), so the difference is paired: a recipe is
    better than the baseline only when its interval excludes 0.
    """
    n = len(rows[0]["_per_query"][1])
    idx = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))
    base = next((r for r in rows if r["recipe"] == baseline), None)

    def rates(row: dict) -> np.ndarray:
        fn, total = row["_per_query"]
        return fn[idx].sum(axis=1) / np.maximum(total[idx].sum(axis=1), 1)

    base_rates = rates(base) if base is not None else None
    for row in rows:
        if not row["negatives"]:
            continue
        r = rates(row)
        row["fn_rate_ci95"] = [float(v) for v in np.percentile(r, [2.5, 97.5])]
        if base_rates is not None:
            row["fn_diff_vs_defaults_ci95"] = [float(v) for v in np.percentile(r - base_rates, [2.5, 97.5])]


def _ci(values: list[float] | None, scale: float = 100) -> str:
    return "-" if not values else f"{scale * values[0]:+.1f} .. {scale * values[1]:+.1f}"


def markdown(results: dict[str, list[dict]], command: str) -> str:
    lines = ["# False negatives vs hardness", "", f"Command: `{command}`", "",
             "FN: share of distinct emitted (query, negative) pairs that the held labels mark relevant "
             "(or an exact-text twin of a relevant document); 95 % CI: bootstrap over queries (2,000 "
             "resamples, the same for every recipe, so the difference from hnmine's defaults is paired). "
             "Rank: the negative's rank in the mining model's ranking of the corpus, known positive removed "
             "(1 = closest). Gap: cos(q, positive) - "
             "cos(q, negative) under the mining model (negative: harder than the positive). Short: queries with "
             f"fewer than {NUM_NEGATIVES} negatives. Seconds: mining wall time on a shared 2-core CPU (noisy).", ""]
    for setting, rows in results.items():
        lines += [f"## {setting}", "", "| recipe | family | FN rate | 95 % CI | vs hnmine defaults (pts, 95 % CI) | "
                  "FN / negatives | mean rank | median rank | mean gap | short | pairs scored | seconds |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            fn = "-" if r["fn_rate"] is None else f"{100 * r['fn_rate']:.1f} %"
            rank = "-" if r["mean_rank"] is None else f"{r['mean_rank']:.1f}"
            gap = "-" if r["mean_gap"] is None else f"{r['mean_gap']:+.3f}"
            ci = "-" if "fn_rate_ci95" not in r else "{:.1f}-{:.1f} %".format(*(100 * v for v in r["fn_rate_ci95"]))
            lines.append(f"| {r['recipe']} | {r['family']} | {fn} | {ci} | {_ci(r.get('fn_diff_vs_defaults_ci95'))} | "
                         f"{r['false_negatives']} / {r['negatives']} | "
                         f"{rank} | {r['median_rank'] or '-'} | {gap} | {100 * r['short_share']:.1f} % | "
                         f"{r['pairs_scored']:,} | {r['seconds']} |")
        lines.append("")
        lines += [f"`{r['recipe']}`: {r['synthetic']:,} of its negatives are synthetic. Labels cannot judge generated "
                  "text, so its FN rate counts mined negatives only; rank and gap include the synthetic ones."
                  for r in rows if r.get("synthetic")]
    return "\n".join(lines)


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 5.5), squeeze=False)
    markers = {"peer": "s", "window": "o", "retriever": "D", "sampling": "v", "bi-encoder filter": "x",
               "no-teacher": "*", "teacher": "P", "label graph": "p"}
    colors = {family: plt.get_cmap("tab10")(i) for i, family in enumerate(markers)}
    for ax, (setting, rows) in zip(axes[0], results.items()):
        # the target: at most 5 % false negatives, no easier than hnmine's default window (mean rank 13)
        ax.axhline(5, color="grey", lw=0.8, ls="--")
        ax.axvline(13, color="grey", lw=0.8, ls="--")
        for r in rows:
            if r["fn_rate"] is None:
                continue
            ax.scatter(r["mean_rank"], 100 * r["fn_rate"], marker=markers.get(r["family"], "o"),
                       color=colors.get(r["family"], "black"), s=90 if r["family"] == "no-teacher" else 45,
                       label=r["family"])
            ax.annotate(r["recipe"], (r["mean_rank"], 100 * r["fn_rate"]), fontsize=6.5, xytext=(4, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("mean rank of emitted negatives (mining model; lower = harder)")
        ax.set_ylabel("false negatives among emitted negatives (%)")
        ax.set_title(setting, fontsize=9)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def synthetic_recipe(generator: str, url: str | None = None, ratio: float = 0.4, scorer: str | None = None,
                     template: str | None = None, seed: int = 0, **options) -> Recipe:
    """hnmine's defaults with LLM-written negatives mixed in (``hnmine synth``): ``generator`` is a local causal LM
    (name or path), or with ``url`` the model name on an OpenAI-compatible server; ``options`` go to the
    ``SyntheticNegatives`` stage. Runs on a copy of the data, so generated passages never reach another recipe's
    corpus. The prompt is ``claim`` for SciFact, else ``qa``."""
    from dataclasses import replace

    from hnmine.stages.synthetic import SyntheticNegatives

    def run(setting: Setting, work_dir: Path) -> Mined:
        data = replace(setting.data, doc_ids=list(setting.data.doc_ids), doc_texts=list(setting.data.doc_texts),
                       synthetic_docs={})
        pipeline = build_pipeline(MineOptions(num_negatives=NUM_NEGATIVES, tiers="none"),
                                  max_positives=int(data.positive_counts.max()))
        pipeline.stages.append(SyntheticNegatives(
            generator=generator, generator_url=url, num_negatives=NUM_NEGATIVES, synthetic_ratio=ratio, seed=seed,
            prompt_template=template or ("claim" if "SciFact" in setting.name else "qa"),
            **({"scorer": scorer} if scorer else {}), **options))
        start = time.perf_counter()
        cand = [b.candidates for b in pipeline.run(data)]
        q = np.concatenate([c.column("query_idx").to_numpy() for c in cand])
        d = np.concatenate([c.column("doc_idx").to_numpy() for c in cand])
        synthetic = {int(i): data.doc_texts[i] for i in np.unique(d) if i >= data.corpus_size}
        return Mined(q, d, time.perf_counter() - start, synthetic=synthetic)

    return Recipe(f"synthetic {ratio:g} ({Path(generator).name}) + hnmine defaults", "synthetic", run=run)


def main(argv: Sequence[str] | None = None, extra_recipes: Sequence[Recipe] = ()) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nfcorpus", default=str(ROOT.parent / "shared/datasets/nfcorpus"))
    parser.add_argument("--scifact", default=str(ROOT.parent / "shared/datasets/scifact"))
    parser.add_argument("--settings", default="nfcorpus,scifact", help="Comma-separated: nfcorpus, scifact.")
    parser.add_argument("--recipes", default=None, help="Only recipes whose name contains one of these "
                                                          "comma-separated words.")
    parser.add_argument("--peer-settings", default="nfcorpus,scifact",
                        help="Settings in which sentence-transformers' miner is run (it re-encodes the corpus in "
                             "float32 each time: minutes per setting on a 2-core CPU).")
    parser.add_argument("--hide-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default="/tmp/hnmine-false-negatives",
                        help="Where sentence-transformers' outputs are kept between runs.")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks/results"))
    parser.add_argument("--name", default="false_negatives", help="Output file stem in --out-dir.")
    parser.add_argument("--teacher", default=None,
                        help="A cross-encoder (path or name) to add as teacher points, each with every rule.")
    parser.add_argument("--label-graph", action="store_true",
                        help="Add the label-graph teacher's points (NFCorpus train as the labelled set; needs "
                             "--settings nfcorpus).")
    parser.add_argument("--generator", default=None,
                        help="Add a synthetic-negatives point (hnmine synth): a local causal LM, or with "
                             "--generator-url the model name on an OpenAI-compatible server.")
    parser.add_argument("--generator-url", default=None)
    parser.add_argument("--synthetic-ratio", type=float, default=0.4)
    parser.add_argument("--synthetic-scorer", default=None, help="Teacher that verifies synthetic negatives "
                                                                 "(cross-encoder:PATH or bi-encoder:NAME).")
    parser.add_argument("--prompt-template", default=None, help="qa | claim | FILE (default: claim on SciFact).")
    args = parser.parse_args(argv)
    recipes = [*RECIPES, *extra_recipes, *(teacher_recipes(args.teacher) if args.teacher else [])]
    if args.label_graph:
        if args.settings.strip() != "nfcorpus":
            parser.error("--label-graph needs --settings nfcorpus: NFCorpus train's labels describe its corpus only")
        recipes += label_graph_recipes(args.nfcorpus)
    if args.generator:
        recipes.append(synthetic_recipe(args.generator, args.generator_url, args.synthetic_ratio,
                                        args.synthetic_scorer, args.prompt_template, args.seed))
    if args.recipes:
        words = [w.strip().lower() for w in args.recipes.split(",")]
        recipes = [r for r in recipes if any(w in r.name.lower() for w in words)]
    builders = {"nfcorpus": lambda: nfcorpus_one_positive(args.nfcorpus, "dev", args.seed),
                "scifact": lambda: scifact_hidden(args.scifact, args.hide_fraction, args.seed)}
    results: dict[str, list[dict]] = {}
    for key in args.settings.split(","):
        setting = builders[key.strip()]()
        setting.embed()
        rows = results.setdefault(setting.name, [])
        peers = key.strip() in args.peer_settings.split(",")
        for recipe in recipes:
            if recipe.family == "peer" and not peers:
                continue
            row = measure(recipe, setting, Path(args.work_dir))
            rows.append(row)
            fn = "-" if row["fn_rate"] is None else f"{100 * row['fn_rate']:.1f}%"
            print(f"[{key}] {recipe.name:48s} FN {fn:>6s}  mean rank {row['mean_rank'] or 0:6.1f}  "
                  f"gap {row['mean_gap'] or 0:+.3f}  short {100 * row['short_share']:.1f}%  {row['seconds']}s",
                  flush=True)
    for rows in results.values():
        add_intervals(rows, DEFAULTS_NAME, args.seed)
        for row in rows:
            row.pop("_per_query")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/false_negatives.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / f"{args.name}.json").write_text(json.dumps({"command": command, "results": results}, indent=1))
    (out / f"{args.name}.md").write_text(markdown(results, command.strip()))
    plot(results, out / f"{args.name}.png")
    print(f"wrote {out / args.name}.json/.md/.png")
    return results


if __name__ == "__main__":
    main()
