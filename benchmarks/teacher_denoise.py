"""Teachers for denoising, judged on NFCorpus dev: how many hidden positives each one catches, at what cost.

The setting is the one of ``benchmarks/false_negatives.py`` (imported from it): a user knows **one** positive per
query (dev's highest grade, chosen with a fixed seed) and everything else is unlabelled; a document with the
exact text of a relevant one counts as relevant. The bundled all-MiniLM-L6-v2
retrieves the candidates (dense, ranks 1-50 after excluding the known positive). Every candidate that dev's
full labels mark relevant is a *hidden positive*, every other one a *true negative*. A teacher scores each
candidate and the known positive; a threshold rule removes candidates. Per rule:

* **catch rate**: the share of hidden positives among the candidates that the rule removes;
* **false-alarm rate**: the share of true negatives that it removes.

Teachers (each score names its scale):

* ``ce``: a cross-encoder trained by ``hnmine train-denoiser`` on NFCorpus **train** only (``--teacher``);
  score: its raw logit.
* ``bi``: the mining model's own cosine similarity (the weak teacher the issue starts from).
* ``bm25``: BM25 (Okapi, hnmine's) score of the (query, passage) pair.
* ``possim``: the cosine similarity of the candidate to the known *positive passage* (not the query); the
  positive's own value is 1.
* ``learned`` (``--fit-on-train N``): a logistic regression over scale-free features of ``bi``, ``bm25`` and
  ``possim`` (raw score, gap to the known positive, per-query z-score, log rank; with ``--fit-ce`` the
  cross-encoder's too) and three neighbourhood signals of the mining model (``neighbourhood_signals``), fitted
  on N NFCorpus **train** queries in the same one-known-positive setting (train's labels say which candidates
  are hidden positives; none of the queries the cross-encoder was trained on, ``--teacher-train-queries``);
  score: its log-odds. No model is trained or downloaded: seconds on a CPU.
* ``ens``: agreement of the four above: the mean of each one's per-query z-score (the query's candidates give
  mean and spread; the known positive is placed on the same per-query scale).

Rules (``hnmine.stages.false_negatives.false_negative_mask``;
``p`` is the known positive's score on the teacher's scale):

* ``max_score`` (global, scale-bound): drop ``s >= t``;  ``margin``: drop ``s >= p - m``;
* ``max_ratio`` (sign-safe): drop ``s > p - |p|(1 - r)``;
* ``max_z`` (per query): drop ``(s - mean_q)/sd_q >= z``;
* ``spread_margin`` (per query): drop ``s >= p - k sd_q``.

Thresholds are **cross-fitted**: dev queries are split in two seeded halves; each rule's threshold is the one
with the highest catch rate at <= ``--max-false-alarm`` on one half, and it is scored on the other half (and
vice versa). The figures are therefore not tuned on the queries they are reported on.

Then the rule is used for mining: 5 ``top`` negatives per query from ranks 1-50 (and from hnmine's default
window 11-50) after removal; the false-negative rate of the emitted negatives, their mean rank, and the share
of queries left with fewer than 5.

    nice -n 10 .venv/bin/python benchmarks/teacher_denoise.py --teacher PATH_FROM_TRAIN_DENOISER

Scores are cached in ``--cache`` (an .npz per teacher model), so a rerun only re-applies the rules.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from false_negatives import nfcorpus_one_positive

from hnmine.data import MiningData
from hnmine.engines.encoder import Encoder
from hnmine.evaluation.label_graph import SIGNALS, LabelGraph
from hnmine.io.inputs import read_beir
from hnmine.pipeline import Pipeline
from hnmine.stages.bm25 import BM25Retriever
from hnmine.stages.dense import DenseRetriever
from hnmine.stages.exclusion import PositiveExcluder
from hnmine.stages.false_negatives import false_negative_mask, query_spread
from hnmine.stages.label_graph import signal_features
from hnmine.stages.window import RankWindow

ROOT = Path(__file__).resolve().parents[1]
NFCORPUS = ROOT.parent / "shared" / "datasets" / "nfcorpus"
RULES = ("max_score", "margin", "max_ratio", "max_z", "spread_margin")
TEACHERS = ("ce", "bi", "bm25", "possim", "ens", "learned", "labels")
SCALES = {"ce": "cross-encoder logit", "bi": "mining-model cosine", "bm25": "BM25 score",
          "possim": "cosine to the known positive passage", "ens": "mean per-query z-score of ce, bi, bm25, possim",
          "learned": "log-odds (lr) or probability (hgb) of a --learned-model over ce (when given)/bi/bm25/possim "
                     "features, fitted on "
                     "NFCorpus train queries the cross-encoder was not trained on",
          "labels": "log-odds (lr) or probability (hgb) of a --learned-model over the learned teacher's features "
                    "plus the label-graph "
                    "signals of NFCorpus train's labels (hnmine.evaluation.label_graph), fitted on train queries "
                    "whose signals come from the other folds' labels"}


def one_known_positive(root: Path, split: str, seed: int) -> tuple[MiningData, set[tuple[int, int]]]:
    """The frontier benchmark's setting, so both report on the same known positives and the same truth."""
    setting = nfcorpus_one_positive(root, split, seed)
    return setting.data, setting.relevant


def dense_candidates(data: MiningData, depth: int) -> tuple[dict[str, np.ndarray], DenseRetriever]:
    dense = DenseRetriever(top_k=depth + 11)  # hnmine's default precision, as `hnmine mine`
    pipeline = Pipeline([dense, PositiveExcluder(), RankWindow(0, depth)], chunk_size=4096)
    cols: dict[str, list] = {"q": [], "d": [], "rank": [], "bi": []}
    for batch in pipeline.run(data):
        c = batch.candidates
        cols["q"].append(c.column("query_idx").to_numpy())
        cols["d"].append(c.column("doc_idx").to_numpy())
        cols["rank"].append(c.column("rank").to_numpy())
        cols["bi"].append(c.column("score").to_numpy().astype(np.float64))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    order = np.lexsort((out["rank"], out["q"]))
    return {k: v[order] for k, v in out.items()}, dense


def ce_scores(model_path: str, data: MiningData, q: np.ndarray, d: np.ndarray, max_length: int,
              cache: Path) -> tuple[np.ndarray, float]:
    key = cache / f"ce-{Path(model_path).name}-{max_length}.npz"
    if key.exists():
        z = np.load(key)
        if len(z["q"]) == len(q) and (z["q"] == q).all() and (z["d"] == d).all():
            return z["s"], float(z["seconds"])
    from hnmine.stages.cross_encoder import load_cross_encoder

    model = load_cross_encoder(model_path, None, max_length)
    start = time.perf_counter()
    s = np.asarray(model.predict([(data.query_texts[a], data.doc_texts[b]) for a, b in zip(q, d)],
                                 batch_size=64, show_progress_bar=True, activation_fn=None), dtype=np.float64)
    seconds = time.perf_counter() - start
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(key, q=q, d=d, s=s, seconds=seconds)
    return s, seconds


def per_query_z(s: np.ndarray, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, sd = query_spread(s, q)
    sd = np.where(sd > 0, sd, 1.0)
    return (s - mean) / sd, (p - mean) / sd


def rule_values(rule: str, s: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The statistic each rule thresholds, oriented so that a candidate is dropped when value >= t."""
    if rule == "max_score":
        return s
    if rule == "margin":
        return -(p - s)  # drop s >= p - m  <=>  s - p >= -m
    if rule == "max_ratio":
        with np.errstate(divide="ignore", invalid="ignore"):
            return -(p - s) / np.abs(p)  # drop s > p - |p|(1-r)  <=>  (s - p)/|p| > -(1-r)
    mean, sd = query_spread(s, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        if rule == "max_z":
            return np.where(sd > 0, (s - mean) / sd, -np.inf)
        return np.where(sd > 0, -(p - s) / sd, -np.inf)  # spread_margin: s >= p - k sd  <=>  (s-p)/sd >= -k


def to_parameter(rule: str, t: float) -> float:
    """The CLI parameter that drops exactly ``value >= t`` (``max_ratio`` drops ``>``: equal up to ties)."""
    return {"max_score": t, "margin": -t, "max_ratio": 1.0 + t, "max_z": t, "spread_margin": -t}[rule]


def best_threshold(values: np.ndarray, hidden: np.ndarray, max_fa: float) -> float:
    """The lowest threshold (most catches) whose false-alarm rate stays <= max_fa on these rows."""
    neg = np.sort(values[~hidden & np.isfinite(values)])[::-1]
    allowed = int(np.floor(max_fa * (~hidden).sum()))
    if allowed >= len(neg):
        finite = values[np.isfinite(values)]
        return float(finite.min()) if len(finite) else np.inf  # nothing to tell apart: drop nothing
    return float(np.nextafter(neg[allowed], np.inf)) if allowed < len(neg) else -np.inf


def rates(drop: np.ndarray, hidden: np.ndarray) -> tuple[float, float]:
    return float(drop[hidden].mean()) if hidden.any() else float("nan"), float(drop[~hidden].mean())


def auc(values: np.ndarray, hidden: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(values)
    n1, n0 = hidden.sum(), (~hidden).sum()
    return float((r[hidden].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def top_per_query(q: np.ndarray, keep: np.ndarray, n: int, num_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` kept rows of each query (rows sorted by query, then rank): the chosen mask and the count
    per query."""
    chosen = np.zeros(len(q), dtype=bool)
    counts = np.zeros(num_queries, dtype=int)
    for i in np.flatnonzero(keep):
        if counts[q[i]] < n:
            counts[q[i]] += 1
            chosen[i] = True
    return chosen, counts


def mine_top(q: np.ndarray, rank: np.ndarray, keep: np.ndarray, hidden: np.ndarray, lo: int, hi: int,
             n: int, num_queries: int) -> dict:
    """``top`` selection of n per query among kept candidates in ranks lo..hi: FN rate, mean rank, short queries."""
    chosen, counts = top_per_query(q, keep & (rank >= lo) & (rank <= hi), n, num_queries)
    return {"fn_rate": float(hidden[chosen].mean()) if chosen.any() else None,
            "mean_rank": float(rank[chosen].mean()) if chosen.any() else None,
            "negatives": int(chosen.sum()), "queries_short": float((counts < n).mean())}


def score_candidates(data: MiningData, relevant: set[tuple[int, int]], args: argparse.Namespace,
                     teacher: str | None) -> tuple:
    """Dense candidates (ranks 1..depth) and every teacher's score of them and of the known positive."""
    cand, dense = dense_candidates(data, args.depth)
    q, d, rank = cand["q"], cand["d"], cand["rank"]
    hidden = np.array([(a, b) in relevant for a, b in zip(q.tolist(), d.tolist())])
    known = np.array([int(data.positives_of(i)[0]) for i in range(data.num_queries)])
    scores: dict[str, np.ndarray] = {"bi": cand["bi"]}
    positive: dict[str, np.ndarray] = {"bi": dense.score_pairs(np.arange(data.num_queries), known)[q]}
    cost: dict[str, dict] = {"bi": {"pairs_scored": 0, "seconds": 0.0}}

    start = time.perf_counter()
    bm25 = BM25Retriever()
    bm25.prepare(data)
    scores["bm25"] = bm25.score_pairs(q, d)
    positive["bm25"] = bm25.score_pairs(np.arange(data.num_queries), known)[q]
    cost["bm25"] = {"pairs_scored": len(q) + data.num_queries, "seconds": round(time.perf_counter() - start, 1)}

    emb = dense._doc_emb
    scores["possim"] = np.einsum("ij,ij->i", emb[d], emb[known[q]]).astype(np.float64)
    positive["possim"] = np.ones(len(q))
    cost["possim"] = {"pairs_scored": 0, "seconds": 0.0}

    extra = neighbourhood_signals(dense, q, d, rank)
    members = ["bi", "bm25", "possim"]
    if teacher:
        allq = np.r_[q, np.arange(data.num_queries)]
        alld = np.r_[d, known]
        s, seconds = ce_scores(teacher, data, allq, alld, args.ce_max_length, args.cache)
        scores["ce"], positive["ce"] = s[:len(q)], s[len(q):][q]
        cost["ce"] = {"pairs_scored": len(allq), "seconds": round(seconds, 1)}
        members.insert(0, "ce")
    zs = [per_query_z(scores[t], positive[t], q) for t in members]
    scores["ens"] = np.mean([z for z, _ in zs], axis=0)
    positive["ens"] = np.mean([zp for _, zp in zs], axis=0)
    cost["ens"] = {"pairs_scored": int(sum(cost[t]["pairs_scored"] for t in members)),
                   "seconds": round(sum(cost[t]["seconds"] for t in members), 1), "members": members}
    return q, d, rank, hidden, scores, positive, cost, extra


def neighbourhood_signals(dense: DenseRetriever, q: np.ndarray, d: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Three more cheap signals from the mining model's embeddings, for the learned teacher only:

    * centrality: the candidate's mean cosine to its query's ten best candidates (hidden positives sit in the
      middle of the query's topic cluster, true negatives at its edge);
    * reverse rank: log(1 + how many of the data set's queries the candidate is closer to than to its own);
    * hubness-corrected cosine: cos(q, d) minus d's mean cosine to its ten closest queries (CSLS).
    """
    doc, query = dense._doc_emb, dense._query_emb
    assert doc is not None and query is not None
    doc_query = doc @ query.T                                   # corpus x queries: small for a benchmark
    own = doc_query[d, q]
    reverse = np.log1p((doc_query[d] > own[:, None]).sum(axis=1))
    hub = np.sort(doc_query, axis=1)[:, -10:].mean(axis=1)
    central = np.zeros(len(q))
    for i in np.unique(q):
        rows = np.flatnonzero(q == i)
        top = d[rows[np.argsort(rank[rows])[:10]]]
        central[rows] = (doc[d[rows]] @ doc[top].T).mean(axis=1)
    return np.stack([central, reverse, own - hub[d]], axis=1)


def subsample(data: MiningData, relevant: set[tuple[int, int]], n: int,
              seed: int) -> tuple[MiningData, set[tuple[int, int]]]:
    if n >= data.num_queries:
        return data, relevant
    keep = sorted(random.Random(seed).sample(range(data.num_queries), n))
    new_of = {old: i for i, old in enumerate(keep)}
    pairs = [(i, int(d)) for i, old in enumerate(keep) for d in data.positives_of(old)]
    small = MiningData.from_pairs([data.query_ids[o] for o in keep], [data.query_texts[o] for o in keep],
                                  data.doc_ids, data.doc_texts, pairs, data.source)
    return small, {(new_of[a], b) for a, b in relevant if a in new_of}


def fit_queries(data: MiningData, relevant: set[tuple[int, int]],
                args: argparse.Namespace) -> tuple[MiningData, set[tuple[int, int]]]:
    """``--fit-on-train`` train queries for the learned teacher, none of them one the cross-encoder was trained on
    (``--teacher-train-queries N``: ``hnmine train-denoiser --max-queries N --seed S`` drew them with
    ``random.Random(S).sample``), so its scores on the fitting queries are as unseen as on dev."""
    if args.teacher and args.teacher_train_queries:
        seen = set(random.Random(args.teacher_seed).sample(range(data.num_queries), args.teacher_train_queries))
        rest = [i for i in range(data.num_queries) if i not in seen]
        keep = sorted(random.Random(args.seed).sample(rest, min(args.fit_on_train, len(rest))))
        new_of = {old: i for i, old in enumerate(keep)}
        pairs = [(i, int(d)) for i, old in enumerate(keep) for d in data.positives_of(old)]
        small = MiningData.from_pairs([data.query_ids[o] for o in keep], [data.query_texts[o] for o in keep],
                                      data.doc_ids, data.doc_texts, pairs, data.source)
        return small, {(new_of[a], b) for a, b in relevant if a in new_of}
    return subsample(data, relevant, args.fit_on_train, args.seed)


def features(scores: dict[str, np.ndarray], positive: dict[str, np.ndarray], q: np.ndarray,
             rank: np.ndarray) -> np.ndarray:
    """Scale-free features of each signal (the three untrained ones, and the cross-encoder when there is one):
    raw score, gap to the known positive, per-query z of the candidate and of the positive; and log rank."""
    cols = [np.log(rank)]
    for t in [t for t in ("ce", "bi", "bm25", "possim") if t in scores]:
        z, zp = per_query_z(scores[t], positive[t], q)
        cols += [scores[t], scores[t] - positive[t], z, zp]
    return np.nan_to_num(np.stack(cols, axis=1))


def fit_learned(x: np.ndarray, y: np.ndarray, kind: str = "lr"):
    """A logistic regression (``lr``) or gradient-boosted trees (``hgb``, seeded) over ``features``, fitted on
    NFCorpus train's one-known-positive candidates. Returns a function giving each row's score (log-odds or
    probability: both only rank candidates; thresholds are fitted on them)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "hgb":
        model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0).fit(x, y)
        return lambda rows: model.predict_proba(rows)[:, 1]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0)).fit(x, y)
    return model.decision_function


def label_graph_features(root: Path, data: MiningData, q: np.ndarray, d: np.ndarray, rank: np.ndarray,
                         exclude: set[str] | frozenset[str]) -> np.ndarray:
    """``LabelGraph`` signals (and each one's per-query z) of these candidates, from NFCorpus **train**'s labels
    minus the queries in ``exclude`` (a query's own labels never describe its own candidates)."""
    queries, _, qrels = read_beir(root, "train")
    cols = [qrels.column(c).to_pylist() for c in ("query_id", "doc_id", "score")]
    labelled = sorted({a for a, _, g in zip(*cols) if g > 0 and a not in exclude})
    column = {a: i for i, a in enumerate(labelled)}
    doc_of = {doc: i for i, doc in enumerate(data.doc_ids)}
    pairs = np.array([(doc_of[b], column[a]) for a, b, g in zip(*cols) if g > 0 and a in column])
    texts = dict(zip(*(queries.column(c).to_pylist() for c in ("query_id", "query"))))
    encoder = Encoder(show_progress=False)
    graph = LabelGraph.from_pairs(pairs[:, 0], pairs[:, 1], data.num_docs,
                                  encoder.encode([texts[a] for a in labelled]), [texts[a] for a in labelled])
    known = np.array([int(data.positives_of(i)[0]) for i in range(data.num_queries)])
    return signal_features(graph, encoder.encode(list(data.query_texts)), list(data.query_texts), q, d, known, rank)


def label_graph_fit_features(root: Path, data: MiningData, q: np.ndarray, d: np.ndarray, rank: np.ndarray,
                             folds: int, seed: int, exclude: frozenset[str] = frozenset()) -> np.ndarray:
    """For the fitting queries: each fold's signals from the labels of the train queries outside that fold (and
    outside ``exclude``)."""
    fold = np.empty(data.num_queries, dtype=int)
    fold[random.Random(seed).sample(range(data.num_queries), data.num_queries)] = np.arange(data.num_queries) % folds
    out = np.zeros((len(q), 2 * len(SIGNALS)))
    for k in range(folds):
        mine = fold[q] == k
        out[mine] = label_graph_features(root, data, q[mine], d[mine], rank[mine],
                                         exclude | {data.query_ids[i] for i in np.flatnonzero(fold == k)})
    return out


FRONTIER_FALSE_ALARMS = (0.1, 0.2, 0.3, 0.4, 0.5)


def teacher_frontier(scores: dict[str, np.ndarray], positive: dict[str, np.ndarray], q: np.ndarray,
                     rank: np.ndarray, hidden: np.ndarray, half: np.ndarray, args: argparse.Namespace,
                     num_queries: int) -> list[dict]:
    """Each teacher as a frontier point family: the top ``--num-negatives`` of ranks 1-depth after removing what
    the teacher flags, at looser and looser thresholds (cross-fitted at each false-alarm budget). A teacher
    that is not good enough at 10 % false alarms may still reach a low FN rate by removing more, at the
    price of hardness; this says how much."""
    out = []
    for teacher in [t for t in TEACHERS if t in scores]:
        for rule in ("max_score", "max_z"):
            v = rule_values(rule, scores[teacher], positive[teacher], q)
            for budget in FRONTIER_FALSE_ALARMS:
                drop = np.zeros(len(q), dtype=bool)
                for fold in (0, 1):
                    fit, test = half == fold, half != fold
                    drop[test] = v[test] >= best_threshold(v[fit], hidden[fit], budget)
                catch, fa = rates(drop, hidden)
                mined = mine_top(q, rank, ~drop, hidden, 1, args.depth, args.num_negatives, num_queries)
                out.append({"teacher": teacher, "rule": rule, "false_alarm_budget": budget, "catch_rate": catch,
                            "false_alarm_rate": fa, "mined": mined})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default=None, help="cross-encoder folder from hnmine train-denoiser (optional)")
    ap.add_argument("--ce-max-length", type=int, default=128)
    ap.add_argument("--data", type=Path, default=NFCORPUS)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--seed", type=int, default=0, help="seed of the known-positive choice and the query halves")
    ap.add_argument("--queries", type=int, default=0,
                    help="a seeded sample of this many queries of --split (0: all); a cross-encoder scores "
                         "51 pairs per query, minutes per hundred queries on a loaded 2-core CPU")
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--max-false-alarm", type=float, default=0.10)
    ap.add_argument("--num-negatives", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "hnmine" / "teacher_denoise")
    ap.add_argument("--fit-on-train", type=int, default=0,
                    help="also fit a 'learned' teacher (logistic regression over bi, bm25, possim features) on this "
                         "many NFCorpus train queries (one known positive each, train's labels); 0: off")
    ap.add_argument("--fit-ce", action="store_true",
                    help="give the learned teacher the cross-encoder's features too (it then scores the fitting "
                         "queries' candidates as well: 51 pairs per query)")
    ap.add_argument("--teacher-train-queries", type=int, default=0,
                    help="the --max-queries the teacher was trained with (train-denoiser's seeded sample); the "
                         "learned fit then uses only other train queries")
    ap.add_argument("--learned-model", choices=("lr", "hgb"), default="lr",
                    help="the learned teachers' model: logistic regression or seeded gradient-boosted trees")
    ap.add_argument("--label-graph", action="store_true",
                    help="with --fit-on-train: also a 'labels' teacher, the learned one plus label-graph signals of "
                         "NFCorpus train's labels (hnmine.evaluation.label_graph)")
    ap.add_argument("--label-folds", type=int, default=3,
                    help="the fitting queries' label-graph signals come from the labels of the other folds")
    ap.add_argument("--teacher-seed", type=int, default=0, help="the --seed the teacher was trained with")
    ap.add_argument("--name", default="teacher_denoise", help="output file stem in --results-dir")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    data, relevant = one_known_positive(args.data, args.split, args.seed)
    if args.queries:
        data, relevant = subsample(data, relevant, args.queries, args.seed)
    q, d, rank, hidden, scores, positive, cost, extra = score_candidates(data, relevant, args, args.teacher)
    if args.fit_on_train:
        start = time.perf_counter()
        tdata, trelevant = one_known_positive(args.data, "train", args.seed)
        tdata, trelevant = fit_queries(tdata, trelevant, args)
        tq, td, trank, thidden, tscores, tpositive, _, textra = score_candidates(tdata, trelevant, args,
                                                                                args.teacher if args.fit_ce else None)
        scores_fit = scores if args.fit_ce else {k: v for k, v in scores.items() if k != "ce"}
        fit_x = np.c_[features(tscores, tpositive, tq, trank), textra]
        x = np.c_[features(scores_fit, positive, q, rank), extra]
        model = fit_learned(fit_x, thidden, args.learned_model)
        scores["learned"] = model(x)
        positive["learned"] = np.full(len(q), np.nan)  # a learned score: no positive on its scale
        fit_info = {"fit_queries": tdata.num_queries, "fit_candidates": len(tq),
                    "fit_hidden_share": float(thidden.mean()), "model": args.learned_model}
        cost["learned"] = {"pairs_scored": 0, "seconds": round(time.perf_counter() - start, 1), **fit_info}
        if args.label_graph:
            start = time.perf_counter()
            fit_graph = label_graph_fit_features(args.data, tdata, tq, td, trank, args.label_folds, args.seed)
            graph = label_graph_features(args.data, data, q, d, rank, exclude=set())
            model = fit_learned(np.c_[fit_x, fit_graph], thidden, args.learned_model)
            scores["labels"] = model(np.c_[x, graph])
            positive["labels"] = np.full(len(q), np.nan)
            cost["labels"] = {"pairs_scored": 0, "seconds": round(time.perf_counter() - start, 1), **fit_info,
                              "label_folds": args.label_folds}

    half = np.array(random.Random(args.seed).choices([0, 1], k=data.num_queries))[q]
    windows = {"11-50": (rank >= 11) & (rank <= 50), "1-50": (rank >= 1) & (rank <= 50)}
    rows = []
    for teacher in [t for t in TEACHERS if t in scores]:
        for rule in RULES:
            if teacher in ("learned", "labels") and rule not in ("max_score", "max_z"):
                continue  # no positive on a learned log-odds scale
            for wname, win in windows.items():
                s, p, qq, h = scores[teacher][win], positive[teacher][win], q[win], hidden[win]
                v = rule_values(rule, s, p, qq)
                drop = np.zeros(len(s), dtype=bool)
                params = []
                for fold in (0, 1):
                    fit, test = half[win] == fold, half[win] != fold
                    t = best_threshold(v[fit], h[fit], args.max_false_alarm)
                    params.append(to_parameter(rule, t))
                    drop[test] = v[test] >= t
                catch, fa = rates(drop, h)
                # the ROC point: one threshold over all queries, false alarms strictly <= the budget
                roc_catch, roc_fa = rates(v >= best_threshold(v, h, args.max_false_alarm), h)
                # the same rule as the product applies it, at the mean of the two fitted parameters
                par = float(np.mean(params))
                kw = {rule: par}
                product_drop = false_negative_mask(s, p, query=qq, **kw)
                keep_all = np.ones(len(q), dtype=bool)
                keep_all[np.flatnonzero(win)] = ~product_drop
                lo, hi = (int(x) for x in wname.split("-"))
                mined = mine_top(q, rank, keep_all, hidden, lo, hi, args.num_negatives, data.num_queries)
                rows.append({"teacher": teacher, "scale": SCALES[teacher], "rule": rule, "window": wname,
                             "catch_rate": catch, "false_alarm_rate": fa, "parameter_per_fold": params,
                             "roc_catch_rate": roc_catch, "roc_false_alarm_rate": roc_fa,
                             "parameter": par, "product_catch_fa": rates(product_drop, h),
                             "auc": auc(np.nan_to_num(v, neginf=-1e9), h), "mined": mined, **cost[teacher]})
    frontier = teacher_frontier(scores, positive, q, rank, hidden, half, args, data.num_queries)
    base = {f"{lo}-{hi}": mine_top(q, rank, np.ones(len(q), bool), hidden, lo, hi, args.num_negatives,
                                   data.num_queries) for lo, hi in ((1, 50), (11, 50))}
    report = {"command": "benchmarks/teacher_denoise.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                     vars(args).items() if v is not None),
              "queries": data.num_queries, "candidates": len(q), "hidden_positives": int(hidden.sum()),
              "hidden_share_11_50": float(hidden[windows["11-50"]].mean()),
              "hidden_share_1_50": float(hidden.mean()), "no_teacher": base, "rows": rows,
              "frontier": frontier}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    (args.results_dir / f"{args.name}.md").write_text(render(report, args))
    print(render(report, args))


def render(report: dict, args: argparse.Namespace) -> str:
    lines = [f"# Teachers on NFCorpus {args.split} (one known positive, dense MiniLM candidates)", "",
             f"{report['queries']} queries, {report['candidates']:,} candidates (ranks 1-{args.depth}), "
             f"{report['hidden_positives']:,} hidden positives ({report['hidden_share_1_50']:.1%} of ranks 1-50, "
             f"{report['hidden_share_11_50']:.1%} of ranks 11-50). Thresholds cross-fitted on query halves at "
             f"<= {args.max_false_alarm:.0%} false alarms.", "",
             f"No teacher, top {args.num_negatives}: " + "; ".join(
                 f"ranks {w} FN {m['fn_rate']:.1%} (mean rank {m['mean_rank']:.1f})"
                 for w, m in report["no_teacher"].items()) + ".",
             "'catch / false alarm': thresholds fitted on one half, applied to the other; 'ROC point': one "
             "threshold over all queries, the catch where false alarms are at most the budget.",
             "", "| teacher | rule | window | catch | false alarm | ROC point: catch / false alarm | AUC | parameter | "
             f"top {args.num_negatives} from the window: FN / mean rank / queries short | pairs scored | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(m: dict) -> str:
        if m["fn_rate"] is None:
            return "none"
        return f"{m['fn_rate']:.1%} / {m['mean_rank']:.1f} / {m['queries_short']:.0%}"

    for r in report["rows"]:
        lines.append(f"| {r['teacher']} | {r['rule']} | {r['window']} | {r['catch_rate']:.1%} | "
                     f"{r['false_alarm_rate']:.1%} | {r['roc_catch_rate']:.1%} / {r['roc_false_alarm_rate']:.1%} | "
                     f"{r['auc']:.3f} | {r['parameter']:.4g} | "
                     f"{cell(r['mined'])} | {r['pairs_scored']:,} | "
                     f"{r['seconds']} |")
    lines += ["", f"## Frontier: top {args.num_negatives} of ranks 1-{args.depth} after each teacher removes more",
              "", "Thresholds cross-fitted on the query halves at each false-alarm budget. FN / mean rank / queries "
              "short of the emitted negatives.", "",
              "| teacher | rule | " + " | ".join(f"FA <= {b:.0%}: catch, FN / rank" for b in FRONTIER_FALSE_ALARMS)
              + " |", "|---|---|" + "---|" * len(FRONTIER_FALSE_ALARMS)]
    cells: dict[tuple[str, str], list[str]] = {}
    for f in report.get("frontier", []):
        m = f["mined"]
        cells.setdefault((f["teacher"], f["rule"]), []).append(
            f"{f['catch_rate']:.0%}, {m['fn_rate']:.1%} / {m['mean_rank']:.1f}" if m["fn_rate"] is not None
            else "none")
    lines += [f"| {t} | {r} | " + " | ".join(c) + " |" for (t, r), c in cells.items()]
    lines += ["", "Scales: " + "; ".join(f"{k}: {v}" for k, v in SCALES.items()), "",
              f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
