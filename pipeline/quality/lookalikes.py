"""Department names that read as one and are two: ``Neur\u043elogy`` (a Cyrillic о) beside ``Neurology``.

The pages group orders by the department as delivered, so the two are two departments, each with its own counts,
and a reader takes them for one (the pages show the odd letter as ``[U+043E]``, report/controls.py, but nothing
says whose twin it is). The check (``departments.name.lookalike``, a warning) names each such pair.

A name is suspect when one of its words mixes Latin letters with Cyrillic or Greek ones (Unicode's scripts, as
RE2 knows them); a name in one script (``Неврология``) is a name, not a disguise. Its *skeleton* is the name with
every letter of ``LOOKALIKE`` replaced by the Latin letter it passes for, then lower-cased. Two distinct names,
one of them suspect, whose skeletons are equal are a pair: the case folded too, since ``NEUR\u041eLOGY`` beside
``Neurology`` is no second department either. ``LOOKALIKE`` is a short map, not Unicode's whole confusables list
(UTS #39, thousands of entries, no library for it pinned): the Cyrillic and Greek letters that UTS #39 gives a
single basic Latin letter as prototype and that a department name could hold. A suspect name without a twin is
no pair: it is one department, counted once, and its odd letter already shows as a code on the pages; the check
notes it at info level (``dq_note``) so that the extract can be mended before a twin arrives.

The cost is the department names', not the orders': one DISTINCT over each department column, then the regular
expression and the letter map on the distinct names only.
"""

from __future__ import annotations

from pipeline.errors import printable
from pipeline.quality.catalog import relations
from pipeline.quality.result import DEPARTMENT_NAMES
from pipeline.wording import counted

# letter -> the basic Latin letter it passes for (UTS #39 confusables.txt prototypes, single letters)
LOOKALIKE = {
    # Cyrillic capitals: А В Е Н І Ј К М О Р С Ѕ Т У Ү Х Ӏ Ԛ Ԝ
    "\u0410": "A", "\u0412": "B", "\u0415": "E", "\u041d": "H", "\u0406": "I", "\u0408": "J", "\u041a": "K",
    "\u041c": "M", "\u041e": "O", "\u0420": "P", "\u0421": "C", "\u0405": "S", "\u0422": "T", "\u0423": "Y",
    "\u04ae": "Y", "\u0425": "X", "\u04c0": "I", "\u051a": "Q", "\u051c": "W",
    # Cyrillic small letters: а с ԁ е һ і ј ӏ о р ԛ ѕ у ԝ х
    "\u0430": "a", "\u0441": "c", "\u0501": "d", "\u0435": "e", "\u04bb": "h", "\u0456": "i", "\u0458": "j",
    "\u04cf": "l", "\u043e": "o", "\u0440": "p", "\u051b": "q", "\u0455": "s", "\u0443": "y", "\u051d": "w",
    "\u0445": "x",
    # Greek capitals: Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ
    "\u0391": "A", "\u0392": "B", "\u0395": "E", "\u0396": "Z", "\u0397": "H", "\u0399": "I", "\u039a": "K",
    "\u039c": "M", "\u039d": "N", "\u039f": "O", "\u03a1": "P", "\u03a4": "T", "\u03a5": "Y", "\u03a7": "X",
    # Greek small letters: α ι ν ο ρ υ
    "\u03b1": "a", "\u03b9": "i", "\u03bd": "v", "\u03bf": "o", "\u03c1": "p", "\u03c5": "u",
}  # fmt: skip

# a word (a run of letters) holding a Latin letter and a Cyrillic or Greek one, in either order (RE2)
MIXED_WORD = r"\p{Latin}\pL*[\p{Greek}\p{Cyrillic}]|[\p{Greek}\p{Cyrillic}]\pL*\p{Latin}"

# the department columns, as table.column; the first table is the check's own
COLUMNS = (("imaging_orders", "ordering_department"), ("procedures", "department"))


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


SKELETON = f"lower(translate(name, {_sql_text(''.join(LOOKALIKE))}, {_sql_text(''.join(LOOKALIKE.values()))}))"


def _names(tables: list[str]) -> str:
    """CTEs: ``names``, every distinct department name of the tables present with where it is
    (``imaging_orders.ordering_department``, several joined by ' and '), whether it mixes scripts and its skeleton;
    ``pairs``, the look-alike pairs (the suspect name first, each pair once)."""
    parts = [
        f"SELECT DISTINCT {column} AS name, '{table}.{column}' AS place FROM src_{table} WHERE {column} IS NOT NULL"
        for table, column in COLUMNS
        if table in tables
    ]
    return f"""WITH names AS MATERIALIZED (
  SELECT name, string_agg(place, ' and ' ORDER BY place) AS place,
         regexp_matches(name, {_sql_text(MIXED_WORD)}) AS mixed, {SKELETON} AS skeleton
  FROM ({" UNION ALL ".join(parts)}) GROUP BY name
), pairs AS (
  SELECT a.name, a.place, b.name AS twin, b.place AS twin_place, b.mixed AS twin_mixed
  FROM names AS a JOIN names AS b ON a.skeleton = b.skeleton AND a.name <> b.name
  WHERE a.mixed AND (NOT b.mixed OR a.name < b.name)
)"""


def pairs_sql(tables: list[str]) -> str:
    """The look-alike pairs, in order: the check's violations."""
    return f"{_names(tables)}\nSELECT name, place, twin, twin_place FROM pairs ORDER BY name, twin"


def shown(name: str) -> str:
    """A name as the check writes it: each look-alike letter as its code (``Neur[U+043E]logy``), control and format
    characters escaped (``errors.printable``)."""
    return printable("".join(f"[U+{ord(c):04X}]" if c in LOOKALIKE else c for c in name))


def check_lookalike_departments(p: dict):
    def run(con):
        present = {name.removeprefix("src_") for name in relations(con)}
        tables = [table for table, _ in COLUMNS if table in present]
        # one pass over the department columns: the pairs, the suspect names without a twin, the number of names
        rows = con.execute(
            f"""{_names(tables)}
SELECT 'pair' AS kind, name, place, twin, twin_place, twin_mixed FROM pairs
UNION ALL
SELECT 'alone', name, place, NULL, NULL, NULL FROM names AS a
WHERE mixed AND NOT EXISTS (SELECT 1 FROM names AS b WHERE b.skeleton = a.skeleton AND b.name <> a.name)
UNION ALL
SELECT 'names', NULL, NULL, NULL, NULL, NULL FROM names
ORDER BY kind, name, twin"""
        ).fetchall()
        pairs = [row[1:] for row in rows if row[0] == "pair"]
        alone = [(name, place) for kind, name, place, *_ in rows if kind == "alone"]
        total = sum(row[0] == "names" for row in rows)
        # the names that pass for another: every suspect one of a pair (both, when both mix scripts)
        suspect = {name for name, *_ in pairs} | {twin for _, _, twin, _, twin_mixed in pairs if twin_mixed}
        sample = [f"{shown(name)} ({place}) reads as {shown(twin)} ({twin_place})" for name, place, twin, twin_place, _ in pairs]
        note = None
        if alone:
            listed = "; ".join(f"{shown(name)} ({place})" for name, place in alone[:3])
            more = f"; and {len(alone) - 3} more" if len(alone) > 3 else ""
            note = (
                f"{counted(len(alone), 'department name')} with Latin and Cyrillic or Greek letters in one word, "
                f"reading as no other department: {listed}{more} (no look-alike pair; the pages show such letters as codes)"
            )
        return len(suspect), total, bool(pairs), sample, pairs_sql(tables), note

    run.sample_key = DEPARTMENT_NAMES
    return ["src_imaging_orders"], run
