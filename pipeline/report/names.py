"""Display names: how a department key from the extracts, or a key of the audit's (a reason code, a
recorded value), is printed for people.

A configured name wins (``[display_names.departments]``); a snake_case key without one is
title-cased (``interventional_radiology`` -> ``Interventional Radiology``); any other key is
printed as it is (``Tiny & Rare`` stays). An audit's key is printed as its label (rules.csv, the
manifest's ``[report] labels``), else with its underscores as spaces. File names and data outputs keep the key.

A page prints a name (a department, a provider id) or an order's study or indication whole up to
``PRINTED_WHOLE`` characters; a longer one, which the ingest lets through up to 1,000 (10,000 an indication;
``contract.LONGEST_TEXT``), as its first ``PRINTED_START`` and a note of its length (``printed``): one
1,000-character department filled every page it was named on (the hospital report's PDF grew from 14 pages
to 35). The workbook and the data outputs keep it whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import polars as pl

from pipeline.wording import counted

NOT_RECORDED = "(not recorded)"
_SNAKE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
# names up to 120 characters print whole (cutting one of 81 would print more than it saves); longer ones their first 80
PRINTED_WHOLE, PRINTED_START = 120, 80


def department_name(key: str | None, names: dict[str, str]) -> str:
    """The printed name of a department key."""
    if key is None:
        return NOT_RECORDED
    if key in names:
        return names[key]
    if _SNAKE.fullmatch(key):
        return key.replace("_", " ").title()
    return key


def printed(name: str) -> str:
    """A name as a page prints it: whole, or its first 80 characters and '… (1,000 characters; whole in the workbook)'."""
    if len(name) <= PRINTED_WHOLE:
        return name
    return f"{name[:PRINTED_START].rstrip()}… ({counted(len(name), 'character')}; whole in the workbook)"


def printed_department(key: str | None, names: dict[str, str]) -> str:
    """A department as a page prints it: its name (``department_name``), bounded (``printed``)."""
    return printed(department_name(key, names))


def department_names(config: dict) -> dict[str, str]:
    """The configured department names from a run's configuration (``run_info["config"]``)."""
    return dict((config.get("display_names") or {}).get("departments") or {})


def _each_key(keys: pl.Expr, words: Callable[[str], str]) -> pl.Expr:
    """A String column of keys put into ``words`` once per distinct key, not once per row (null stays null)."""
    return keys.map_batches(
        lambda s: s.replace_strict({k: words(k) for k in s.drop_nulls().unique().to_list()}, default=None),
        return_dtype=pl.String,
    )


def named(column: str, names: dict[str, str], alias: str | None = None) -> pl.Expr:
    """A String column of department keys as printed names (vectorised; null -> '(not recorded)')."""
    return _each_key(pl.col(column), lambda k: department_name(k, names)).fill_null(NOT_RECORDED).alias(alias or column)


def printed_named(column: str, names: dict[str, str], alias: str | None = None) -> pl.Expr:
    """``named`` as a page prints it (``printed``): the workbook keeps ``named``'s whole names."""
    return _each_key(pl.col(column), lambda k: printed_department(k, names)).fill_null(NOT_RECORDED).alias(alias or column)


def printed_text(column: str, alias: str | None = None) -> pl.Expr:
    """A String column of names without display names (provider ids) as a page prints them (null stays null)."""
    return _each_key(pl.col(column).cast(pl.String), printed).alias(alias or column)


def label(key: str | None, labels: dict[str, str]) -> str:
    """The printed words of an audit's key: its label, else the key with underscores as spaces."""
    if key is None:
        return NOT_RECORDED
    return labels.get(key) or key.replace("_", " ")


_KEY = re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b")  # a snake_case key inside a sentence
_TAIL_KEY = re.compile(r"^(?P<head>.*: .*?)(?P<key>\b[a-z0-9]+(?:_[a-z0-9]+)*)$")  # "Excluded: cancelled"


def in_words(text: str, labels: dict[str, str]) -> str:
    """A sentence that names the audit's keys (an attrition step) with each key in words: any snake_case key by
    its label or with underscores as spaces, and a one-word key that ends a 'What: key' sentence by its label."""
    tail = _TAIL_KEY.match(text)
    if tail and tail["key"] in labels:
        return _KEY.sub(lambda key: label(key.group(0), labels), tail["head"]) + labels[tail["key"]]
    return _KEY.sub(lambda key: label(key.group(0), labels), text)


def rule_labels(rules: pl.DataFrame) -> dict[str, str]:
    """Each reason code's label (rules.csv), from the rules the render stage reads from ``ref_rules``."""
    return dict(zip(rules["reason_code"].to_list(), rules["label"].to_list(), strict=True))


def labelled(column: str, labels: dict[str, str], alias: str | None = None) -> pl.Expr:
    """A String column of an audit's keys in words (``label``; vectorised over its distinct keys; null stays null)."""
    return _each_key(pl.col(column).cast(pl.String), lambda k: label(k, labels)).alias(alias or column)


def labelled_list(column: str, labels: dict[str, str], alias: str, separator: str = "; ") -> pl.Expr:
    """A column of '|'-separated keys (an order's reasons) as their labels joined by ``separator``."""
    keys = pl.col(column).cast(pl.String).str.split("|").list.eval(pl.element().filter(pl.element() != ""))
    known = pl.element().replace_strict(labels, default=None, return_dtype=pl.String)
    words = keys.list.eval(known.fill_null(pl.element().str.replace_all("_", " ")))
    return words.list.join(separator).alias(alias)


def slugify(name: str | None) -> str:
    """A file-name-safe, collision-resistant slug for a department name."""
    text = "" if name is None else str(name)
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "department"
    return f"{base}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
