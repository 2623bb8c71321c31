"""Prompt templates for synthetic hard negatives: what the generator is asked to write.

A synthetic negative is useful when it looks like the positive (topic, vocabulary, style) but does not answer
the query. The two defaults ask for exactly that, for the two shapes retrieval data comes in: a question with
an answering passage (QA), and a claim with a passage that supports it (fact checking, SciFact). A template is
plain text with named fields ``{query}``, ``{positive}`` and ``{title}``; the model's whole answer is taken as
one passage, so a template asks for the passage only.
"""

from __future__ import annotations

import string
from pathlib import Path

from hnmine.errors import InputError

QA_TEMPLATE = """You write hard negative passages for training a search engine.

Question: {query}

A passage that answers it:
{positive}

Write one new passage on the same topic, in the same style, vocabulary and length, that does NOT answer the \
question (it may discuss a related aspect, a different population, or a neighbouring fact). \
Reply with the passage only."""

CLAIM_TEMPLATE = """You write hard negative passages for training a fact-checking retriever.

Claim: {query}

A passage that supports the claim:
{positive}

Write one new passage on the same topic, in the same style, vocabulary and length, that does NOT support the \
claim: for example the same study design with a contradicting or unrelated finding. \
Reply with the passage only."""

BUILTIN_TEMPLATES = {"qa": QA_TEMPLATE, "claim": CLAIM_TEMPLATE}
FIELDS = ("query", "positive", "title")


def template_fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise InputError(f"prompt template: not a valid template ({exc}); write literal braces as {{{{ }}}}") \
            from None


def load_template(spec: str) -> str:
    """``qa`` or ``claim`` (the built-in defaults), or a path to a text file with the same named fields."""
    if spec in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[spec]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError(f"--prompt-template {spec!r}: expected qa, claim or a template file that exists")
    template = path.read_text(encoding="utf-8")
    fields = template_fields(template)
    unknown = fields - set(FIELDS)
    if unknown:
        raise InputError(f"--prompt-template {spec}: unknown field(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join('{' + f + '}' for f in FIELDS)})")
    if "query" not in fields and "positive" not in fields:
        raise InputError(f"--prompt-template {spec}: uses neither {{query}} nor {{positive}}, so every prompt "
                         "would be the same")
    return template


def render(template: str, query: str, positive: str, title: str = "") -> str:
    return template.format(query=query, positive=positive, title=title)


def clean_answer(text: str) -> str:
    """The passage in a model's answer: surrounding whitespace, quotes and a leading 'Passage:' label removed."""
    text = text.strip()
    for label in ("passage:", "negative passage:", "new passage:"):
        if text.casefold().startswith(label):
            text = text[len(label):].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text
