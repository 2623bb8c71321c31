"""``hnmine synth``: mine as ``mine`` does, then mix in LLM-written negatives that passed verification.

The command only assembles a pipeline: the standard recipe (retrieve, exclude positives, rank window, select)
followed by a ``synthetic_negatives`` stage, written to ``OUTPUT.pipeline.toml`` and run by ``mine``'s own job,
so the chunk loop, resume, writers and manifest are the same code; ``hnmine mine --config OUTPUT.pipeline.toml``
reruns it exactly. The manifest then says ``synth`` and carries the generator, prompt and sampling settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hnmine.config import pipeline_to_toml
from hnmine.errors import InputError
from hnmine.io.inputs import ColumnNames
from hnmine.io.manifest import manifest_path
from hnmine.io.writers import FORMATS, atomic_path, check_output_path
from hnmine.recipe import MineOptions, build_pipeline
from hnmine.stages.synthetic import SyntheticNegatives

INPUT = "Input"
OUTPUT = "Output"
MINING = "Mined negatives"
GENERATION = "Generator"
VERIFY = "Verification (every synthetic negative)"

# Each option's default is the dataclass field it sets, defined there once (tests/test_registry.py checks them).
SYNTH = SyntheticNegatives()
MINE = MineOptions()
COLUMN_NAMES = ColumnNames()


def synth(
    queries: Annotated[Path | None, typer.Option(help="Queries Parquet (query_id, query). Default: none.",
                                                 rich_help_panel=INPUT)] = None,
    corpus: Annotated[Path | None, typer.Option(help="Corpus Parquet (doc_id, text, optional title). Default: none.",
                                                rich_help_panel=INPUT)] = None,
    qrels: Annotated[Path | None, typer.Option(help="Positives Parquet (query_id, doc_id, optional score > 0). "
                                                    "Default: none.", rich_help_panel=INPUT)] = None,
    pairs: Annotated[Path | None, typer.Option(help="One (anchor|query, positive) file instead. Default: none.",
                                               rich_help_panel=INPUT)] = None,
    beir: Annotated[Path | None, typer.Option(help="A BEIR folder. Default: none.", rich_help_panel=INPUT)] = None,
    split: Annotated[str, typer.Option(help="BEIR qrels split.", rich_help_panel=INPUT)] = "train",
    strict: Annotated[bool, typer.Option(help="Fail on queries with no positive.", rich_help_panel=INPUT)] = False,
    query_id_column: Annotated[str, typer.Option(
        help="Query id column.", rich_help_panel=INPUT)] = COLUMN_NAMES.query_id,
    query_column: Annotated[str, typer.Option(help="Query text column.", rich_help_panel=INPUT)] = COLUMN_NAMES.query,
    doc_id_column: Annotated[str, typer.Option(
        help="Document id column.", rich_help_panel=INPUT)] = COLUMN_NAMES.doc_id,
    text_column: Annotated[str, typer.Option(help="Document text column.", rich_help_panel=INPUT)] = COLUMN_NAMES.text,
    title_column: Annotated[str, typer.Option(help="Used if present.", rich_help_panel=INPUT)] = COLUMN_NAMES.title,
    qrels_score_column: Annotated[str, typer.Option(
        help="Used if present.", rich_help_panel=INPUT)] = COLUMN_NAMES.qrels_score,
    positive_column: Annotated[str, typer.Option(help="Pairs file positive column.",
                                                 rich_help_panel=INPUT)] = COLUMN_NAMES.pairs_positive,
    output: Annotated[Path | None, typer.Option(help="Output file (Parquet; jsonl for flagembedding). Required.",
                                                rich_help_panel=OUTPUT)] = None,
    format: Annotated[str, typer.Option(help=f"Output layout: {' | '.join(FORMATS)}.",
                                        rich_help_panel=OUTPUT)] = "triplet",
    audit_columns: Annotated[bool, typer.Option(help="Ids, ranks, scores and 'source' after the text columns.",
                                                rich_help_panel=OUTPUT)] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.", rich_help_panel=OUTPUT)] = False,
    chunk_size: Annotated[int, typer.Option(help="Queries per chunk.", rich_help_panel=OUTPUT)] = MINE.chunk_size,
    quiet: Annotated[bool, typer.Option(help="No progress bars or summary.", rich_help_panel=OUTPUT)] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its finished chunks (generations "
                                              "are cached apart, per answer).", rich_help_panel=OUTPUT)] = True,
    print_config: Annotated[bool, typer.Option(help="Print the pipeline as TOML and exit.",
                                               rich_help_panel=OUTPUT)] = False,
    num_negatives: Annotated[int, typer.Option(help="Negatives per query, mined and synthetic together.",
                                               rich_help_panel=MINING)] = SYNTH.num_negatives,
    synthetic_ratio: Annotated[float, typer.Option(
        help="Share of each query's negatives that may be synthetic: round(ratio x num-negatives) at most; mined "
             "ones fill the rest (1.0: synthetic only, where enough pass).",
             rich_help_panel=MINING)] = SYNTH.synthetic_ratio,
    retriever: Annotated[str, typer.Option(help="Mined candidates: bm25 | dense | hybrid.",
                                           rich_help_panel=MINING)] = MINE.retriever,
    range_min: Annotated[int, typer.Option(
        help="Skip the top N mined candidates.", rich_help_panel=MINING)] = MINE.range_min,
    range_max: Annotated[int, typer.Option(
        help="Mined candidates up to this rank.", rich_help_panel=MINING)] = MINE.range_max,
    model: Annotated[str, typer.Option(
        help="Mining model (SentenceTransformer name or path): retrieval, the hardness floor and the corpus "
             "near-copy search. The default is bundled.", rich_help_panel=MINING)] = SYNTH.model,
    batch_size: Annotated[int, typer.Option(
        help="Encoding / teacher batch size.", rich_help_panel=MINING)] = SYNTH.batch_size,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (encoders, teacher and a local "
                                                    "generator). Default: best available.",
                                               rich_help_panel=MINING)] = None,
    dtype: Annotated[str, typer.Option(
        help="Encoder precision (see `mine --help`).", rich_help_panel=MINING)] = SYNTH.dtype,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Embedding and generation cache. Default: $HNMINE_CACHE or ~/.cache/hnmine.",
        rich_help_panel=MINING)] = None,
    cache: Annotated[bool, typer.Option(help="Reuse and store embeddings and generations on disk.",
                                        rich_help_panel=MINING)] = SYNTH.use_cache,
    seed: Annotated[int, typer.Option(help="Seed for sampling (every answer has its own seed derived from it).",
                                      rich_help_panel=MINING)] = SYNTH.seed,
    generator: Annotated[str | None, typer.Option(
        help="A local Hugging Face causal LM, by name or path, run through transformers. Default: none.",
        rich_help_panel=GENERATION)] = None,
    generator_url: Annotated[str | None, typer.Option(
        help="An OpenAI-compatible server (vLLM, llama.cpp, Ollama, hosted), e.g. http://127.0.0.1:8000/v1; API key "
             "from HNMINE_GENERATOR_API_KEY or OPENAI_API_KEY. Needs pip install 'hnmine\\[synth]'. Default: none.",
        rich_help_panel=GENERATION)] = None,
    generator_model: Annotated[str | None, typer.Option(help="Model name on --generator-url. Default: none.",
                                                        rich_help_panel=GENERATION)] = None,
    prompt_template: Annotated[str, typer.Option(
        help="qa | claim (built-in) | a text file with {query}, {positive} and {title} (BEIR titles).",
        rich_help_panel=GENERATION)] = SYNTH.prompt_template,
    candidates_per_pair: Annotated[int, typer.Option(help="Texts generated per (query, positive).",
                                                     rich_help_panel=GENERATION)] = SYNTH.num_candidates,
    positives_per_query: Annotated[int, typer.Option(help="Positives per query to write from.",
                                                     rich_help_panel=GENERATION)] = SYNTH.positives_per_query,
    temperature: Annotated[float, typer.Option(
        help="Sampling temperature.", rich_help_panel=GENERATION)] = SYNTH.temperature,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.", rich_help_panel=GENERATION)] = SYNTH.top_p,
    max_new_tokens: Annotated[int, typer.Option(
        help="Tokens per answer.", rich_help_panel=GENERATION)] = SYNTH.max_new_tokens,
    generator_batch_size: Annotated[int, typer.Option(help="Local generator: prompts per forward batch.",
                                                      rich_help_panel=GENERATION)] = SYNTH.generator_batch_size,
    concurrency: Annotated[int, typer.Option(help="Server: requests in flight at once.",
                                             rich_help_panel=GENERATION)] = SYNTH.concurrency,
    timeout: Annotated[float, typer.Option(help="Server: seconds per request before it is retried.",
                                           rich_help_panel=GENERATION)] = SYNTH.timeout,
    max_retries: Annotated[int, typer.Option(help="Server: retries (exponential backoff) on connection errors, "
                                                  "timeouts, 429 and 5xx.",
                                                  rich_help_panel=GENERATION)] = SYNTH.max_retries,
    scorer: Annotated[str, typer.Option(
        help="Teacher that must judge each synthetic negative not relevant: cross-encoder:NAME (best) or "
             "bi-encoder:NAME, as in `hnmine denoise`.", rich_help_panel=VERIFY)] = SYNTH.scorer,
    max_score: Annotated[float | None, typer.Option(help="Reject teacher score >= T. Default: off.",
                                                    rich_help_panel=VERIFY)] = None,
    margin: Annotated[float | None, typer.Option(help="Reject teacher score >= lowest positive's - M. Default: off.",
                                                 rich_help_panel=VERIFY)] = None,
    max_ratio: Annotated[float | None, typer.Option(
        help="Reject teacher score > R x lowest positive's (sign-safe). Default: 0.95 when neither --max-score nor "
             "--margin is given, else off.", rich_help_panel=VERIFY)] = None,
    min_similarity: Annotated[float | None, typer.Option(
        help="Hardness floor: reject a mining-model cosine to the query below this.",
        rich_help_panel=VERIFY)] = SYNTH.min_similarity,
    max_overlap: Annotated[float, typer.Option(
        help="Reject near-copies: character 5-gram Jaccard >= this with the query, a positive, a mined candidate or "
             "a nearby corpus passage.", rich_help_panel=VERIFY)] = SYNTH.max_overlap,
    corpus_neighbours: Annotated[int, typer.Option(
        help="Nearest corpus passages (mining model) checked for near-copies; 0: exact copies only.",
        rich_help_panel=VERIFY)] = SYNTH.corpus_neighbours,
) -> None:
    """Mine, then mix in LLM-written hard negatives that a teacher judged not relevant (SyNeg)."""
    from hnmine.cli import _guarded, _load

    def build() -> tuple[SyntheticNegatives, str]:
        if generator_url and generator:
            raise InputError("give --generator (a local model) or --generator-url with --generator-model, not both")
        if generator_url and not generator_model:
            raise InputError("--generator-url needs --generator-model NAME (the model name the server serves)")
        if generator_model and not generator_url:
            raise InputError("--generator-model names a model on a server: add --generator-url URL "
                             "(or give a local model with --generator)")
        ratio = 0.95 if all(v is None for v in (max_score, margin, max_ratio)) else max_ratio
        stage = SyntheticNegatives(
            model=model, batch_size=batch_size, device=device, dtype=dtype,
            cache_dir=str(cache_dir) if cache_dir else None, use_cache=cache,
            generator=generator or generator_model or "", generator_url=generator_url,
            prompt_template=prompt_template, num_candidates=candidates_per_pair,
            positives_per_query=positives_per_query, temperature=temperature, top_p=top_p,
            max_new_tokens=max_new_tokens, seed=seed, generator_batch_size=generator_batch_size,
            concurrency=concurrency, timeout=timeout, max_retries=max_retries, scorer=scorer,
            max_score=max_score, margin=margin, max_ratio=ratio, min_similarity=min_similarity,
            max_overlap=max_overlap, corpus_neighbours=corpus_neighbours, num_negatives=num_negatives,
            synthetic_ratio=synthetic_ratio)
        opts = MineOptions(retriever=retriever, num_negatives=num_negatives, range_min=range_min,
                           range_max=range_max, seed=seed, chunk_size=chunk_size, tiers="none")
        opts.dense = type(opts.dense)(model=model, batch_size=batch_size, device=device, dtype=dtype,
                                      cache_dir=str(cache_dir) if cache_dir else None, use_cache=cache)
        columns = ColumnNames(query_id=query_id_column, query=query_column, doc_id=doc_id_column,
                              text=text_column, title=title_column, qrels_query_id=query_id_column,
                              qrels_doc_id=doc_id_column, qrels_score=qrels_score_column,
                              pairs_positive=positive_column, pairs_anchor=("anchor", query_column))
        has_input = any(v is not None for v in (queries, qrels, pairs, beir))
        max_positives = 10
        if has_input or not print_config:
            data = _load(queries, corpus, qrels, pairs, beir, split, columns, strict)
            max_positives = int(data.positive_counts.max())
        pipeline = build_pipeline(opts, max_positives)
        pipeline.stages.append(stage)
        if stage.generator and not print_config:
            stage.check()  # an unreachable server or a missing model fails here, before any corpus is encoded
        elif not stage.generator:
            stage.build_generator()  # says which generator options are missing
        return stage, pipeline_to_toml(pipeline)

    if print_config:
        _, toml = _guarded(build)
        typer.echo(toml)
        return

    def prepare() -> tuple[SyntheticNegatives, Path, Path]:
        if output is None:
            raise InputError("missing --output")
        out = check_output_path(output, overwrite)
        stage, toml = build()
        config = out.with_name(out.name + ".pipeline.toml")
        with atomic_path(config) as tmp:
            tmp.write_text(toml, encoding="utf-8")
        return stage, out, config

    stage, out, config = _guarded(prepare)
    # mine's own job runs the pipeline file: the same chunk loop, resume, writers and manifest. Through the
    # command line parser, so mine sees exactly the flags a user would type (pipeline flags live in the file).
    args = ["mine", "--config", str(config), "--output", str(out), "--format", format, "--split", split]
    for flag, value in (("--queries", queries), ("--corpus", corpus), ("--qrels", qrels), ("--pairs", pairs),
                        ("--beir", beir), ("--query-id-column", query_id_column), ("--query-column", query_column),
                        ("--doc-id-column", doc_id_column), ("--text-column", text_column),
                        ("--title-column", title_column), ("--qrels-score-column", qrels_score_column),
                        ("--positive-column", positive_column)):
        if value is not None:
            args += [flag, str(value)]
    args += [flag for flag, on in (("--strict", strict), ("--overwrite", overwrite), ("--quiet", quiet),
                                   ("--no-audit-columns", not audit_columns), ("--no-resume", not resume)) if on]
    from typer.main import get_command

    from hnmine.cli import app

    code = get_command(app).main(args=args, prog_name="hnmine", standalone_mode=False)
    if code:
        raise typer.Exit(code)
    path = manifest_path(out)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["command"] = "synth"
    manifest["synthetic"] = {**stage.describe(), "counts": {k.removeprefix("synthetic "): v for k, v in
                                                            manifest["counts"]["notes"].items()
                                                            if k.startswith("synthetic ")}}
    from hnmine.io.writers import write_json_atomic

    write_json_atomic(path, manifest)
