"""The one tokenizer BM25 uses, for the corpus and the queries alike.

Queries and documents must go through the same function, or BM25 silently matches nothing; keeping it in one
small module (no NLTK, no model tokenizer) makes the lexical scores reproducible from the text alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["ENGLISH_STOPWORDS", "tokenize", "tokenize_many"]

# ``\w`` is Unicode-aware on str patterns, so accented and non-Latin words stay whole ("café", "déjà").
# Compiled once: the corpus is tokenized document by document and the pattern lookup would otherwise
# go through re's cache on every call.
_WORD = re.compile(r"\w+")

# NLTK's English stopword list, without the entries that contain an apostrophe ("don't", "you're", ...):
# ``\w+`` splits those at the apostrophe and their pieces ("don", "t", "you", "re") are already listed,
# so the apostrophe forms could never match a token. Embedded so that stopword removal needs no download.
_STOPWORDS_TEXT = """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is
    are was were be been being have has had having do does did doing a an the and but if or because as until
    while of at by for with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will just don should now
    d ll m o re ve y ain aren couldn didn doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn
    weren won wouldn
"""
ENGLISH_STOPWORDS: frozenset[str] = frozenset(_STOPWORDS_TEXT.split())


def tokenize(text: str, stopwords: bool = False) -> list[str]:
    """Lowercased Unicode word tokens of ``text``; with ``stopwords=True``, English stopwords are dropped.

    Stopwords are kept by default because BM25's idf already discounts them, and the reference scores
    (rank-bm25 over these tokens) are defined on the full token stream.
    """
    tokens = _WORD.findall(text.lower())
    if stopwords:
        return [t for t in tokens if t not in ENGLISH_STOPWORDS]
    return tokens


def tokenize_many(texts: Iterable[str], stopwords: bool = False) -> list[list[str]]:
    """``tokenize`` over many texts, so callers never pass a different option to corpus and queries."""
    return [tokenize(t, stopwords=stopwords) for t in texts]
