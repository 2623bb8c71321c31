"""Synthetic hard negatives: a tiny local GPT-2 (random weights, real plumbing) and a real chat-completions server.

The local model's text is nonsense; what is tested is real: batching, per-sample seeding, the generation cache,
resume, verification and the output. The server is a real HTTP server on 127.0.0.1 speaking the OpenAI
chat-completions API, scripted to answer, fail with 500s, stall past the timeout, send malformed JSON and drop
the connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hnmine.cli import app
from hnmine.errors import InputError
from hnmine.generators import GenerationError, GenerationRequest, Sampling
from hnmine.generators.cache import GenerationCache
from hnmine.generators.openai_server import OpenAICompatibleGenerator
from hnmine.generators.prompts import load_template, render
from tests.conftest import SAMPLE

runner = CliRunner()
NUM_QUERIES = 6


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 1-layer GPT-2 with a 326-token byte-level BPE tokenizer, built and saved here, loaded by path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    texts = ["the cell protein binds the receptor in mice", "patients with diabetes showed lower risk"] * 20
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                        unk_token="<|endoftext|>", model_max_length=256)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def small_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first six sample queries, their positives and 30 other sample passages: fast to encode."""
    path = tmp_path_factory.mktemp("synth-inputs")
    queries = pq.read_table(SAMPLE / "queries.parquet").slice(0, NUM_QUERIES)
    qrels = pq.read_table(SAMPLE / "qrels.parquet")
    qids = set(queries.column("query_id").to_pylist())
    qrels = qrels.filter(pa.array([q in qids for q in qrels.column("query_id").to_pylist()]))
    corpus = pq.read_table(SAMPLE / "corpus.parquet")
    wanted = set(qrels.column("doc_id").to_pylist())
    ids = corpus.column("doc_id").to_pylist()
    keep = [i for i, d in enumerate(ids) if d in wanted] + [i for i, d in enumerate(ids) if d not in wanted][:30]
    pq.write_table(queries, path / "queries.parquet")
    pq.write_table(qrels, path / "qrels.parquet")
    pq.write_table(corpus.take(pa.array(sorted(keep))), path / "corpus.parquet")
    return path


class ChatServer:
    """A chat-completions server on 127.0.0.1; ``script`` lists what the next requests get, then 'ok'."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in {"content-type": "application/json", "content-length": str(len(body)),
                             **(headers or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up waiting (timeout test)
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with server.lock:
                    action = server.script.pop(0) if server.script else "ok"
                    server.bodies.append(body)
                    server.auth.append(self.headers.get("authorization"))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if action == "500":
                        self._send(500, b'{"error": {"message": "overloaded"}}', {"retry-after-ms": "1"})
                    elif action == "slow":
                        time.sleep(1.5)
                        self._send(200, server.completion(body))
                    elif action == "garbage":
                        self._send(200, b"<html>this is not json")
                    elif action == "drop":
                        self.close_connection = True
                        self.connection.close()
                    else:
                        time.sleep(server.delay)
                        self._send(200, server.completion(body))
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def text_for(prompt: str, seed: int) -> str:
        tag = hashlib.sha256(f"{prompt}|{seed}".encode()).hexdigest()[:6]
        return (f"Cohort {tag}: a trial of dietary sodium in {int(tag, 16) % 90 + 10} adult volunteers found no "
                "change in measured outcomes over twelve weeks of follow-up.")

    def completion(self, body: dict) -> bytes:
        text = self.text_for(body["messages"][0]["content"], body.get("seed", 0))
        return json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}]}).encode()


@pytest.fixture()
def chat_server():
    server = ChatServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def synth(inputs: Path, out: Path, *extra: str, expect: int = 0):
    args = ["synth", "--queries", str(inputs / "queries.parquet"), "--corpus", str(inputs / "corpus.parquet"),
            "--qrels", str(inputs / "qrels.parquet"), "--output", str(out), "--quiet", "--num-negatives", "4",
            "--range-min", "0", "--range-max", "10", "--candidates-per-pair", "2", "--max-new-tokens", "12",
            "--cache-dir", str(out.parent / "cache"), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


def manifest(out: Path) -> dict:
    return json.loads(Path(f"{out}.manifest.json").read_text())


# ------------------------------------------------------------------------------------------------ local path


def test_local_generator_is_batched_and_seeded_per_sample(tiny_gpt2):
    from hnmine.generators.local_lm import LocalCausalLM

    requests = [GenerationRequest("what causes cancer", 1), GenerationRequest("a much longer prompt: " * 5, 2),
                GenerationRequest("what causes cancer", 3), GenerationRequest("what causes cancer", 1)]
    one = LocalCausalLM(tiny_gpt2, Sampling(max_new_tokens=10), batch_size=1).generate(requests)
    three = LocalCausalLM(tiny_gpt2, Sampling(max_new_tokens=10), batch_size=3).generate(requests)
    assert one == three  # a sample does not depend on its batch neighbours or padding
    assert one[0] == one[3] and one[0] != one[2]  # same prompt and seed: same text; another seed: another text
    assert all(isinstance(t, str) for t in one)


def test_synth_local_end_to_end_cache_and_manifest(tiny_gpt2, small_inputs, tmp_path, monkeypatch):
    out = tmp_path / "syn.parquet"
    synth(small_inputs, out, "--generator", tiny_gpt2, "--min-similarity", "-1", "--synthetic-ratio", "0.5")
    table = pq.read_table(out).to_pydict()
    sources = np.array(table["source"])
    assert set(sources) <= {"mined", "synthetic"} and (sources == "synthetic").any()
    per_query: dict[str, set] = {}
    for q, n, s in zip(table["query_id"], table["negative_id"], sources):
        per_query.setdefault(q, set()).add((n, s))
    for negatives in per_query.values():
        assert len(negatives) == 4  # mined and synthetic together
        assert sum(s == "synthetic" for _, s in negatives) <= 2  # round(0.5 x 4)
    syn_rows = sources == "synthetic"
    assert all(n.startswith("synthetic:") for n in np.array(table["negative_id"])[syn_rows])
    assert set(np.array(table["retriever"])[syn_rows]) == {"synthetic"}
    m = manifest(out)
    assert m["command"] == "synth"
    assert m["synthetic"]["generator"]["model"] == tiny_gpt2
    assert m["synthetic"]["sampling"] == {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 12, "seed": 0}
    assert m["synthetic"]["counts"]["generated"] == NUM_QUERIES * 2
    assert Path(f"{out}.pipeline.toml").exists()

    # Another filter and another ratio: every answer comes from the cache, the model is never called.
    from hnmine.generators.local_lm import LocalCausalLM

    def refuse(*args, **kwargs):
        raise AssertionError("the generator was called although every answer is cached")

    monkeypatch.setattr(LocalCausalLM, "generate", refuse)
    again = tmp_path / "syn-ratio1.parquet"
    synth(small_inputs, again, "--generator", tiny_gpt2, "--min-similarity", "-1", "--synthetic-ratio", "1.0",
          "--max-overlap", "0.9")
    counts = manifest(again)["synthetic"]["counts"]
    assert counts["generated"] == 0 and counts["from cache"] == NUM_QUERIES * 2


def test_synth_resumes_after_an_interrupt_byte_identical(tiny_gpt2, small_inputs, tmp_path, monkeypatch):
    from hnmine.generators.local_lm import LocalCausalLM

    args = ("--generator", tiny_gpt2, "--min-similarity", "-1", "--chunk-size", "2")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = tmp_path / "a" / "out.parquet"
    synth(small_inputs, straight, *args)

    real = LocalCausalLM.generate
    calls = {"n": 0}

    def interrupt_second_call(self, requests):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, requests)

    monkeypatch.setattr(LocalCausalLM, "generate", interrupt_second_call)
    resumed = tmp_path / "b" / "out.parquet"
    synth(small_inputs, resumed, *args, expect=130)
    assert not resumed.exists()
    calls["n"] = 10  # count again, never interrupt
    synth(small_inputs, resumed, *args)
    assert resumed.read_bytes() == straight.read_bytes()
    assert calls["n"] == 10 + 2  # the first chunk came back from the checkpoint: the two others were generated
    # ... and the manifest still counts all three chunks (their counts are kept with each chunk's checkpoint)
    assert manifest(resumed)["synthetic"]["counts"] == manifest(straight)["synthetic"]["counts"]


def test_verification_rejects_copies_duplicates_easy_and_teacher_relevant(small_inputs, tmp_path):
    """A scripted generator: each kind of bad candidate is rejected by its own check, and counted there."""
    from hnmine.io.inputs import load_qrels_inputs
    from hnmine.pipeline import Pipeline
    from hnmine.recipe import MineOptions, build_pipeline
    from hnmine.stages.synthetic import SyntheticNegatives

    data = load_qrels_inputs(small_inputs / "queries.parquet", small_inputs / "corpus.parquet",
                             small_inputs / "qrels.parquet")
    other = data.doc_texts[-1]  # a corpus passage that is not a positive

    class Scripted:
        def identity(self) -> str:
            return "scripted"

        def check(self) -> None:
            pass

        def describe(self) -> dict:
            return {}

        def generate(self, requests):
            texts, seen = [], {}
            for r in requests:  # the k-th request of each prompt gets the k-th kind of bad candidate
                k = seen[r.prompt] = seen.get(r.prompt, -1) + 1
                q = next(i for i, t in enumerate(data.query_texts) if f"Question: {t}\n" in r.prompt)
                positive = data.doc_texts[data.positives_of(q)[0]]
                texts.append(["", positive.upper(), data.query_texts[q], other, "zzz qqq xxx", "zzz qqq xxx"][k])
            return texts

    def run(**options) -> SyntheticNegatives:
        stage = SyntheticNegatives(generator="scripted", num_candidates=6, num_negatives=3, synthetic_ratio=1.0,
                                   cache_dir=str(tmp_path / "cache"), use_cache=False, corpus_neighbours=0,
                                   **options)
        stage._generator = Scripted()
        base = build_pipeline(MineOptions(num_negatives=3, range_min=0, range_max=6, tiers="none"))
        pipeline = Pipeline([*base.stages, stage], chunk_size=3)
        table = pipeline.triplets(data)
        assert set(table.column("source").to_pylist()) == {"mined"}  # nothing survives
        return stage

    counts = run(min_similarity=0.3).counts
    assert counts["rejected_empty"] == NUM_QUERIES
    assert counts["rejected_copy"] == 3 * NUM_QUERIES  # the positive, the query, a corpus passage
    assert counts["rejected_duplicate"] == NUM_QUERIES  # the second "zzz qqq xxx"
    assert counts["rejected_easy"] == NUM_QUERIES  # the first one: far from every query
    assert counts["verified"] == counts["used"] == 0
    # With no hardness floor, the teacher decides; --max-score -1 on a cosine calls everything relevant.
    counts = run(min_similarity=None, max_score=-1.0).counts
    assert counts["rejected_easy"] == 0 and counts["rejected_teacher"] == NUM_QUERIES


def test_every_layout_has_a_source_column(tiny_gpt2, small_inputs, tmp_path):
    for fmt, suffix in (("n-tuple", "parquet"), ("labeled-pair", "parquet"), ("flagembedding", "jsonl"),
                        ("tevatron", "jsonl")):
        out = tmp_path / f"{fmt}.{suffix}"
        synth(small_inputs, out, "--generator", tiny_gpt2, "--min-similarity", "-1", "--format", fmt)
        if fmt == "flagembedding":
            records = [json.loads(line) for line in out.read_text().splitlines()]
            assert all(len(r["neg_sources"]) == len(r["neg"]) for r in records)
            assert "synthetic" in {s for r in records for s in r["neg_sources"]}
        elif fmt == "tevatron":
            records = [json.loads(line) for line in out.read_text().splitlines()]
            sources = [p["source"] for r in records for p in r["negative_passages"]]
            assert "synthetic" in sources and set(sources) <= {"mined", "synthetic"}
        elif fmt == "n-tuple":
            sources = pq.read_table(out).column("negative_sources").to_pylist()
            assert "synthetic" in {s for row in sources for s in row}
        else:
            t = pq.read_table(out).to_pydict()
            assert {s for s, lab in zip(t["source"], t["label"]) if lab == 1} == {None}
            assert "synthetic" in {s for s, lab in zip(t["source"], t["label"]) if lab == 0}


def test_synth_pipeline_toml_runs_inside_mine(tiny_gpt2, small_inputs, tmp_path):
    out = tmp_path / "syn.parquet"
    synth(small_inputs, out, "--generator", tiny_gpt2, "--min-similarity", "-1")
    again = tmp_path / "mine.parquet"
    result = runner.invoke(app, ["mine", "--queries", str(small_inputs / "queries.parquet"),
                                 "--corpus", str(small_inputs / "corpus.parquet"), "--qrels",
                                 str(small_inputs / "qrels.parquet"), "--config", f"{out}.pipeline.toml",
                                 "--output", str(again), "--quiet"])
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == out.read_bytes()


def test_eval_reports_synthetic_negatives_apart(tiny_gpt2, small_inputs, tmp_path):
    out = tmp_path / "syn.parquet"
    synth(small_inputs, out, "--generator", tiny_gpt2, "--min-similarity", "-1")
    from hnmine.evaluation.metrics import evaluate

    result = evaluate(pq.read_table(out), pq.read_table(small_inputs / "qrels.parquet"), mined_path=out)
    syn = result.metrics["synthetic"]
    assert syn["negatives"]["synthetic"] > 0 and syn["negatives"]["mined"] > 0
    assert syn["checks"]["generated"] == NUM_QUERIES * 2
    assert syn["by_scale"]["retriever"]["synthetic"]["negative_score"]["n"] == syn["negatives"]["synthetic"]
    assert "teacher_cosine" in syn["by_scale"]
    cli = runner.invoke(app, ["eval", str(out), "--qrels", str(small_inputs / "qrels.parquet"),
                              "--report", str(tmp_path / "report")])
    assert cli.exit_code == 0, cli.output
    assert "synthetic / mined negatives" in cli.output
    assert "## Synthetic negatives" in (tmp_path / "report" / "report.md").read_text()


def test_plain_mine_marks_every_row_mined(small_inputs, tmp_path):
    out = tmp_path / "m.parquet"
    result = runner.invoke(app, ["mine", "--queries", str(small_inputs / "queries.parquet"),
                                 "--corpus", str(small_inputs / "corpus.parquet"), "--qrels",
                                 str(small_inputs / "qrels.parquet"), "--output", str(out), "--quiet",
                                 "--range-min", "0", "--range-max", "10"])
    assert result.exit_code == 0, result.output
    assert set(pq.read_table(out).column("source").to_pylist()) == {"mined"}


# ------------------------------------------------------------------------------------------------ server path


def generator(server: ChatServer, **kwargs) -> OpenAICompatibleGenerator:
    options = {"concurrency": 3, "timeout": 0.5, "max_retries": 2, **kwargs}
    return OpenAICompatibleGenerator(server.url, "m", Sampling(max_new_tokens=20), **options)


def requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"prompt {i}", seed=i) for i in range(n)]


def test_server_answers_in_order_with_bounded_concurrency_and_key(chat_server, monkeypatch):
    monkeypatch.setenv("HNMINE_GENERATOR_API_KEY", "sk-test-123")
    chat_server.delay = 0.05
    texts = generator(chat_server).generate(requests(12))
    assert texts == [ChatServer.text_for(f"prompt {i}", i) for i in range(12)]
    assert chat_server.max_in_flight <= 3
    assert set(chat_server.auth) == {"Bearer sk-test-123"}
    body = chat_server.bodies[0]
    assert body["model"] == "m" and body["max_tokens"] == 20 and body["temperature"] == 0.8
    assert "sk-test-123" not in json.dumps(generator(chat_server).describe())


@pytest.mark.parametrize("failure", ["500", "slow", "drop"])
def test_server_transient_failures_are_retried(chat_server, failure):
    chat_server.script = [failure, failure]  # the first two requests fail, the retries succeed
    texts = generator(chat_server, concurrency=1).generate(requests(4))
    assert texts == [ChatServer.text_for(f"prompt {i}", i) for i in range(4)]
    assert len(chat_server.bodies) == 6


@pytest.mark.parametrize(("failure", "message"), [
    ("500", "answered HTTP 500 after 2 tries"),
    ("slow", "no answer within 0.5s after 2 tries"),
    ("drop", "unreachable or dropped the connection after 2 tries"),
    ("garbage", "answered something that is not a chat completion"),
])
def test_server_persistent_failures_give_one_line(chat_server, failure, message):
    chat_server.script = ["ok", "ok"] + [failure] * 10  # fails mid-run, after two answers
    with pytest.raises(GenerationError) as exc:
        generator(chat_server, concurrency=1, max_retries=1).generate(requests(4))
    assert message in str(exc.value) and chat_server.url in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unreachable_server_fails_before_any_work(small_inputs, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    out = tmp_path / "o.parquet"
    result = synth(small_inputs, out, "--generator-url", f"http://127.0.0.1:{port}/v1", "--generator-model", "m",
                   expect=2)
    assert "unreachable" in result.output and "Traceback" not in result.output
    assert not out.exists() and not Path(f"{out}.manifest.json").exists()


def test_synth_against_the_server_with_a_template_file(chat_server, small_inputs, tmp_path):
    template = tmp_path / "prompt.txt"
    template.write_text("Q={query}\nP={positive}\nT={title}\nWrite a negative.")
    out = tmp_path / "srv.parquet"
    synth(small_inputs, out, "--generator-url", chat_server.url, "--generator-model", "m",
          "--prompt-template", str(template), "--synthetic-ratio", "1.0", "--min-similarity", "-1")
    prompts = [b["messages"][0]["content"] for b in chat_server.bodies]
    queries = pq.read_table(small_inputs / "queries.parquet").column("query").to_pylist()
    assert len(prompts) == NUM_QUERIES * 2 and all(p.startswith("Q=") for p in prompts)
    assert {p.split("\n")[0][2:] for p in prompts} == set(queries)
    table = pq.read_table(out).to_pydict()
    assert "synthetic" in set(table["source"])
    texts = {t for t, s in zip(table["negative"], table["source"]) if s == "synthetic"}
    assert all(t.startswith("Cohort ") for t in texts)
    assert manifest(out)["synthetic"]["generator"]["url"] == chat_server.url

    # Garbage from the server mid-run: one line, exit 2, no output.
    chat_server.script = ["garbage"] * 50
    bad = tmp_path / "bad.parquet"
    result = synth(small_inputs, bad, "--generator-url", chat_server.url, "--generator-model", "m", "--seed", "7",
                   expect=2)
    assert "not a chat completion" in result.output and not bad.exists()


def test_bad_options_are_one_line_errors(small_inputs, tmp_path, tiny_gpt2):
    out = tmp_path / "o.parquet"
    for extra, message in [
        ((), "need a generator"),
        (("--generator-url", "http://127.0.0.1:9/v1"), "needs --generator-model"),
        (("--generator", tiny_gpt2, "--synthetic-ratio", "1.5"), "--synthetic-ratio"),
        (("--generator", tiny_gpt2, "--prompt-template", str(tmp_path / "missing.txt")), "--prompt-template"),
        (("--generator", str(tmp_path / "no-model")), "path not found"),
    ]:
        result = synth(small_inputs, out, *extra, expect=2)
        assert message in result.output, result.output
    assert not out.exists()


def test_template_fields_are_checked(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("{query} {passage}")
    with pytest.raises(InputError, match="unknown field"):
        load_template(str(path))
    assert render(load_template("claim"), "q", "p").count("Claim: q") == 1


def test_generation_cache_round_trip(tmp_path):
    cache = GenerationCache(tmp_path)
    cache.put_many({"a": "x", "b": "y"})
    assert GenerationCache(tmp_path).get_many(["a", "b", "c"]) == {"a": "x", "b": "y"}
    assert GenerationCache(tmp_path, enabled=False).get_many(["a"]) == {}


def test_false_negatives_benchmark_accepts_a_generator(tiny_gpt2, small_inputs, tmp_path, monkeypatch):
    """The frontier benchmark's generator hook: synthetic rows measured from their text, kept out of the FN rate."""
    import importlib.util

    from hnmine.io.inputs import load_qrels_inputs

    spec = importlib.util.spec_from_file_location("fn_bench", SAMPLE.parent / "benchmarks" / "false_negatives.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fn_bench", bench)  # dataclasses look their module up while being defined
    spec.loader.exec_module(bench)
    data = load_qrels_inputs(small_inputs / "queries.parquet", small_inputs / "corpus.parquet",
                             small_inputs / "qrels.parquet")
    relevant = {(q, int(data.positives_of(q)[0])) for q in range(data.num_queries)}
    setting = bench.Setting("small", data, relevant)
    setting.embed()
    recipe = bench.synthetic_recipe(tiny_gpt2, ratio=0.4, min_similarity=None, max_new_tokens=12)
    row = bench.measure(recipe, setting, tmp_path)
    assert row["synthetic"] > 0 and row["negatives"] > row["synthetic"]
    assert row["fn_rate"] == 0.0  # positives are never emitted; synthetic rows are not judged
    assert data.corpus_size == data.num_docs  # the recipe ran on a copy: the shared data gained no documents
    assert row["mean_rank"] >= 1
