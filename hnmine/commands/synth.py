"""``hnmine synth``: mine as ``mine`` does, then mix in LLM-written negatives that passed verification.

The command only assembles a pipeline: the standard recipe (retrieve, exclude positives, rank window, select)
followed by a ``synthetic_negatives`` stage, written to ``OUTPUT.pipeline.toml`` and run by the mining job
(:func:`hnmine.jobs.mine.mine`, as ``hnmine mine --config OUTPUT.pipeline.toml`` would), so the chunk loop,
resume, writers and manifest are the same code, and that command reruns it exactly. The manifest then says
``synth`` and carries the generator, prompt and sampling settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from hnmine.commands.common import OUTPUT, CliMessages, Format, InputFlags, Overwrite, Quiet, guarded, shown, takes
from hnmine.commands.mine import render
from hnmine.config import pipeline_to_toml
from hnmine.errors import InputError
from hnmine.io.manifest import manifest_path
from hnmine.io.writers import atomic_path, check_output_path, write_json_atomic
from hnmine.jobs.mine import MineJob
from hnmine.jobs.mine import mine as run_mine
from hnmine.recipe import MineOptions, build_pipeline
from hnmine.stages.synthetic import SyntheticNegatives

MINING = "Mined negatives"
GENERATION = "Generator"
VERIFY = "Verification (every synthetic negative)"

# Each option's default is the dataclass field it sets, defined there once (tests/test_registry.py checks them).
SYNTH = SyntheticNegatives()
MINE = MineOptions()


@dataclass
class SynthFlags(InputFlags):
    output: Annotated[Path | None, typer.Option(help="Output file (Parquet; jsonl for flagembedding). Required.",
                                                rich_help_panel=OUTPUT)] = None
    format: Format = "triplet"
    audit_columns: Annotated[bool, typer.Option(help="Ids, ranks, scores and 'source' after the text columns.",
                                                rich_help_panel=OUTPUT)] = True
    overwrite: Overwrite = False
    chunk_size: Annotated[int, typer.Option(help="Queries per chunk.", rich_help_panel=OUTPUT)] = MINE.chunk_size
    quiet: Quiet = False
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its finished chunks (generations "
                                              "are cached apart, per answer).", rich_help_panel=OUTPUT)] = True
    print_config: Annotated[bool, typer.Option(help="Print the pipeline as TOML and exit.",
                                               rich_help_panel=OUTPUT)] = False
    num_negatives: Annotated[int, typer.Option(help="Negatives per query, mined and synthetic together.",
                                               rich_help_panel=MINING)] = SYNTH.num_negatives
    synthetic_ratio: Annotated[float, typer.Option(
        help="Share of each query's negatives that may be synthetic: round(ratio x num-negatives) at most; mined "
             "ones fill the rest (1.0: synthetic only, where enough pass).",
             rich_help_panel=MINING)] = SYNTH.synthetic_ratio
    retriever: Annotated[str, typer.Option(help="Mined candidates: bm25 | dense | hybrid.",
                                           rich_help_panel=MINING)] = MINE.retriever
    range_min: Annotated[int, typer.Option(
        help="Skip the top N mined candidates.", rich_help_panel=MINING)] = MINE.range_min
    range_max: Annotated[int, typer.Option(
        help="Mined candidates up to this rank.", rich_help_panel=MINING)] = MINE.range_max
    model: Annotated[str, typer.Option(
        help="Mining model (SentenceTransformer name or path): retrieval, the hardness floor and the corpus "
             "near-copy search. The default is bundled.", rich_help_panel=MINING)] = SYNTH.model
    batch_size: Annotated[int, typer.Option(
        help="Encoding / teacher batch size.", rich_help_panel=MINING)] = SYNTH.batch_size
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (encoders, teacher and a local "
                                                    "generator). Default: best available.",
                                               rich_help_panel=MINING)] = None
    dtype: Annotated[str, typer.Option(
        help="Encoder precision (see `mine --help`).", rich_help_panel=MINING)] = SYNTH.dtype
    cache_dir: Annotated[Path | None, typer.Option(
        help="Embedding and generation cache. Default: $HNMINE_CACHE or ~/.cache/hnmine.",
        rich_help_panel=MINING)] = None
    cache: Annotated[bool, typer.Option(help="Reuse and store embeddings and generations on disk.",
                                        rich_help_panel=MINING)] = SYNTH.use_cache
    seed: Annotated[int, typer.Option(help="Seed for sampling (every answer has its own seed derived from it).",
                                      rich_help_panel=MINING)] = SYNTH.seed
    generator: Annotated[str | None, typer.Option(
        help="A local Hugging Face causal LM, by name or path, run through transformers. Default: none.",
        rich_help_panel=GENERATION)] = None
    generator_url: Annotated[str | None, typer.Option(
        help="An OpenAI-compatible server (vLLM, llama.cpp, Ollama, hosted), e.g. http://127.0.0.1:8000/v1; API key "
             "from HNMINE_GENERATOR_API_KEY or OPENAI_API_KEY. Needs pip install 'hnmine\\[synth]'. Default: none.",
        rich_help_panel=GENERATION)] = None
    generator_model: Annotated[str | None, typer.Option(help="Model name on --generator-url. Default: none.",
                                                        rich_help_panel=GENERATION)] = None
    prompt_template: Annotated[str, typer.Option(
        help="qa | claim (built-in) | a text file with {query}, {positive} and {title} (BEIR titles).",
        rich_help_panel=GENERATION)] = SYNTH.prompt_template
    candidates_per_pair: Annotated[int, typer.Option(help="Texts generated per (query, positive).",
                                                     rich_help_panel=GENERATION)] = SYNTH.num_candidates
    positives_per_query: Annotated[int, typer.Option(help="Positives per query to write from.",
                                                     rich_help_panel=GENERATION)] = SYNTH.positives_per_query
    temperature: Annotated[float, typer.Option(
        help="Sampling temperature.", rich_help_panel=GENERATION)] = SYNTH.temperature
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.", rich_help_panel=GENERATION)] = SYNTH.top_p
    max_new_tokens: Annotated[int, typer.Option(
        help="Tokens per answer.", rich_help_panel=GENERATION)] = SYNTH.max_new_tokens
    generator_batch_size: Annotated[int, typer.Option(help="Local generator: prompts per forward batch.",
                                                      rich_help_panel=GENERATION)] = SYNTH.generator_batch_size
    concurrency: Annotated[int, typer.Option(help="Server: requests in flight at once.",
                                             rich_help_panel=GENERATION)] = SYNTH.concurrency
    timeout: Annotated[float, typer.Option(help="Server: seconds per request before it is retried.",
                                           rich_help_panel=GENERATION)] = SYNTH.timeout
    max_retries: Annotated[int, typer.Option(help="Server: retries (exponential backoff) on connection errors, "
                                                  "timeouts, 429 and 5xx.",
                                                  rich_help_panel=GENERATION)] = SYNTH.max_retries
    scorer: Annotated[str, typer.Option(
        help="Teacher that must judge each synthetic negative not relevant: cross-encoder:NAME (best) or "
             "bi-encoder:NAME, as in `hnmine denoise`.", rich_help_panel=VERIFY)] = SYNTH.scorer
    max_score: Annotated[float | None, typer.Option(help="Reject teacher score >= T. Default: off.",
                                                    rich_help_panel=VERIFY)] = None
    margin: Annotated[float | None, typer.Option(help="Reject teacher score >= lowest positive's - M. Default: off.",
                                                 rich_help_panel=VERIFY)] = None
    max_ratio: Annotated[float | None, typer.Option(
        help="Reject teacher score > R x lowest positive's (sign-safe). Default: 0.95 when neither --max-score nor "
             "--margin is given, else off.", rich_help_panel=VERIFY)] = None
    min_similarity: Annotated[float | None, typer.Option(
        help="Hardness floor: reject a mining-model cosine to the query below this.",
        rich_help_panel=VERIFY)] = SYNTH.min_similarity
    max_overlap: Annotated[float, typer.Option(
        help="Reject near-copies: character 5-gram Jaccard >= this with the query, a positive, a mined candidate or "
             "a nearby corpus passage.", rich_help_panel=VERIFY)] = SYNTH.max_overlap
    corpus_neighbours: Annotated[int, typer.Option(
        help="Nearest corpus passages (mining model) checked for near-copies; 0: exact copies only.",
        rich_help_panel=VERIFY)] = SYNTH.corpus_neighbours

    def stage(self) -> SyntheticNegatives:
        if self.generator_url and self.generator:
            raise InputError("give --generator (a local model) or --generator-url with --generator-model, not both")
        if self.generator_url and not self.generator_model:
            raise InputError("--generator-url needs --generator-model NAME (the model name the server serves)")
        if self.generator_model and not self.generator_url:
            raise InputError("--generator-model names a model on a server: add --generator-url URL "
                             "(or give a local model with --generator)")
        ratio = 0.95 if all(v is None for v in (self.max_score, self.margin, self.max_ratio)) else self.max_ratio
        return SyntheticNegatives(
            model=self.model, batch_size=self.batch_size, device=self.device, dtype=self.dtype,
            cache_dir=str(self.cache_dir) if self.cache_dir else None, use_cache=self.cache,
            generator=self.generator or self.generator_model or "", generator_url=self.generator_url,
            prompt_template=self.prompt_template, num_candidates=self.candidates_per_pair,
            positives_per_query=self.positives_per_query, temperature=self.temperature, top_p=self.top_p,
            max_new_tokens=self.max_new_tokens, seed=self.seed, generator_batch_size=self.generator_batch_size,
            concurrency=self.concurrency, timeout=self.timeout, max_retries=self.max_retries, scorer=self.scorer,
            max_score=self.max_score, margin=self.margin, max_ratio=ratio, min_similarity=self.min_similarity,
            max_overlap=self.max_overlap, corpus_neighbours=self.corpus_neighbours,
            num_negatives=self.num_negatives, synthetic_ratio=self.synthetic_ratio)

    def build(self) -> tuple[SyntheticNegatives, str]:
        """The synthetic stage and the whole pipeline as TOML; generator problems fail here, before any work."""
        stage = self.stage()
        opts = MineOptions(retriever=self.retriever, num_negatives=self.num_negatives, range_min=self.range_min,
                           range_max=self.range_max, seed=self.seed, chunk_size=self.chunk_size, tiers="none")
        opts.dense = type(opts.dense)(model=self.model, batch_size=self.batch_size, device=self.device,
                                      dtype=self.dtype, cache_dir=str(self.cache_dir) if self.cache_dir else None,
                                      use_cache=self.cache)
        inputs = self.inputs()
        max_positives = 10
        if inputs.given or not self.print_config:
            max_positives = int(inputs.load(CliMessages(self.quiet).warn).positive_counts.max())
        pipeline = build_pipeline(opts, max_positives)
        pipeline.stages.append(stage)
        if stage.generator and not self.print_config:
            stage.check()  # an unreachable server or a missing model fails here, before any corpus is encoded
        elif not stage.generator:
            stage.build_generator()  # says which generator options are missing
        return stage, pipeline_to_toml(pipeline)

    def prepare(self) -> tuple[SyntheticNegatives, Path, Path]:
        if self.output is None:
            raise InputError("missing --output")
        out = check_output_path(self.output, self.overwrite)
        stage, toml = self.build()
        config = out.with_name(out.name + ".pipeline.toml")
        with atomic_path(config) as tmp:
            tmp.write_text(toml, encoding="utf-8")
        return stage, out, config


@takes(SynthFlags)
def synth(flags: SynthFlags) -> None:
    """Mine, then mix in LLM-written hard negatives that a teacher judged not relevant (SyNeg)."""
    if flags.print_config:
        _, toml = guarded(flags.build)
        typer.echo(toml)
        return
    stage, out, config = guarded(flags.prepare)
    # The mining job runs the pipeline file, exactly as `hnmine mine --config FILE` with these inputs would.
    job = MineJob(out, config=config, format=flags.format, audit_columns=flags.audit_columns,
                  overwrite=flags.overwrite, resume=flags.resume)
    result = shown(flags.quiet, lambda: run_mine(job, flags.inputs(), messages=CliMessages(flags.quiet)))
    manifest = result.manifest
    manifest["command"] = "synth"
    manifest["synthetic"] = {**stage.describe(), "counts": {k.removeprefix("synthetic "): v for k, v in
                                                            manifest["counts"]["notes"].items()
                                                            if k.startswith("synthetic ")}}
    write_json_atomic(manifest_path(out), manifest)
    render(result, flags.quiet)
