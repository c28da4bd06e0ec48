"""Ballots: the anonymous labels a reviewer is shown, and the reading of the ranking it returns.

Each reviewer sees every other member's answer under a label ("Response A", "Response B", ...)
in an order shuffled for that reviewer alone, and replies with the labels ranked best first.
A reply counts only when it ranks exactly the labels shown, each once; nothing is guessed.
"""

from __future__ import annotations

import json
import random
import re
import string

LABEL_PREFIX = "Response "
EXCERPT_CHARS = 60

_LABEL = re.compile(r"(?:response\s*)?([a-z]+)", re.IGNORECASE)
_LEADING_LABEL = re.compile(r"response\s*([a-z]+)\b", re.IGNORECASE)
_RANKING_KEY = re.compile(r'"ranking"\s*:\s*(?=\[)', re.IGNORECASE)
_STRING_ARRAY = re.compile(r'\[\s*"')
_FINAL_RANKING = re.compile(r"final\s+ranking\W*?:", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•]\s)\s*(.+?)\s*$")
_INLINE_SEPARATORS = re.compile(r"[,>]")
_DECODER = json.JSONDecoder()


class InvalidBallot(ValueError):
    """A reviewer's reply does not rank exactly the labels it was shown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def label(index: int) -> str:
    """Return the label shown at a 0-based position: Response A to Z, then AA, AB, ..."""
    letters = ""
    number = index + 1
    while number:
        number, rest = divmod(number - 1, len(string.ascii_uppercase))
        letters = string.ascii_uppercase[rest] + letters
    return LABEL_PREFIX + letters


def assign_labels(members: list[str], reviewer: str, rng: random.Random) -> dict[str, str]:
    """Return label → member for every member but the reviewer, in a freshly shuffled order."""
    others = [member for member in members if member != reviewer]
    rng.shuffle(others)
    return {label(index): member for index, member in enumerate(others)}


def parse_ranking(text: str | None, labels: list[str]) -> list[str]:
    """Return the labels a reply ranks, best first; raise ``InvalidBallot`` unless valid.

    The last JSON ``"ranking"`` array in the reply decides (fenced or amid prose); without
    one, the list after the last ``FINAL RANKING:``; without that, the last bare JSON array of
    strings. Labels may be written "Response B" or "B", in any case.
    """
    if not text or not text.strip():
        raise InvalidBallot("empty reply")
    for read in (_json_ranking, _final_ranking, _bare_array):
        items = read(text)
        if items is not None:
            return _permutation(items, labels)
    raise InvalidBallot("no ranking found")


def make_ballot(
    reviewer: str, labels: dict[str, str], raw: str | None, usage: dict | None, latency_ms: int
) -> dict:
    """Return the ballot record for a reviewer's reply, valid or not, keeping the raw text."""
    ballot = _ballot(reviewer, labels, raw, usage, latency_ms)
    try:
        ranking = parse_ranking(raw, list(labels))
    except InvalidBallot as invalid:
        ballot["error"] = invalid.reason
        return ballot
    ballot.update(ranking=[labels[shown] for shown in ranking], valid=True)
    return ballot


def failed_ballot(reviewer: str, labels: dict[str, str], error: str, latency_ms: int) -> dict:
    """Return the ballot record for a reviewer whose call failed."""
    ballot = _ballot(reviewer, labels, None, None, latency_ms)
    ballot["error"] = error
    return ballot


def _ballot(
    reviewer: str, labels: dict[str, str], raw: str | None, usage: dict | None, latency_ms: int
) -> dict:
    return {
        "reviewer": reviewer,
        "labels": dict(labels),
        "ranking": None,
        "valid": False,
        "raw": raw,
        "error": None,
        "usage": usage,
        "latency_ms": latency_ms,
    }


def _json_ranking(text: str) -> list | None:
    found = (_decoded(text, match.end()) for match in _RANKING_KEY.finditer(text))
    return _last([value for value in found if isinstance(value, list)])


def _bare_array(text: str) -> list | None:
    found = (_decoded(text, match.start()) for match in _STRING_ARRAY.finditer(text))
    arrays = [value for value in found if isinstance(value, list)]
    return _last([value for value in arrays if all(isinstance(v, str) for v in value)])


def _final_ranking(text: str) -> list | None:
    markers = list(_FINAL_RANKING.finditer(text))
    if not markers:
        return None
    first, _, rest = text[markers[-1].end() :].partition("\n")
    items = _list_items(rest)
    if not items:
        inline = _INLINE_SEPARATORS.split(first.strip(" *_`"))
        items = [part for part in inline if part.strip()]
    return [_item_label(item) for item in items] or None


def _list_items(text: str) -> list[str]:
    items = []
    for line in text.splitlines():
        if not line.strip():
            continue
        item = _LIST_ITEM.match(line)
        if item is None:
            break
        items.append(item.group(1))
    return items


def _item_label(item: str) -> str:
    """Return the label a list item names, or the item itself for the caller to reject."""
    item = item.strip().strip("*_`").strip()
    leading = _LEADING_LABEL.match(item)
    return LABEL_PREFIX + leading.group(1).upper() if leading else item.rstrip(".)")


def _permutation(items: list, labels: list[str]) -> list[str]:
    if not items:
        raise InvalidBallot("empty ranking")
    shown = {_key(name): name for name in labels}
    ranking: list[str] = []
    for item in items:
        key = _key(item) if isinstance(item, str) else None
        name = shown.get(key) if key else None
        if name is None:
            raise InvalidBallot(f"unknown label {_excerpt(item)}")
        if name in ranking:
            raise InvalidBallot(f"duplicate label {name!r}")
        ranking.append(name)
    missing = [name for name in labels if name not in ranking]
    if missing:
        raise InvalidBallot(f"missing labels: {', '.join(missing)}")
    return ranking


def _key(name: str) -> str | None:
    letters = _LABEL.fullmatch(name.strip())
    return letters.group(1).upper() if letters else None


def _excerpt(item: object) -> str:
    text = repr(item)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _decoded(text: str, index: int) -> object:
    try:
        return _DECODER.raw_decode(text, index)[0]
    except (ValueError, RecursionError):
        return None


def _last(values: list) -> list | None:
    return values[-1] if values else None
