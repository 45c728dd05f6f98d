"""Settings with their defaults: time zone, column maps, paths, reporting, and each audit's parameters.

A TOML file (``--config``) overrides the defaults; command-line options override the file. An
audit's numbers (windows, thresholds) are its manifest's ``[parameters]`` (audits/<id>/audit.toml);
``[audits.<id>]`` in the config overrides them (checked against the manifest by ``pipeline.audits``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import ConfigError
from pipeline.ingest.contract import CONTRACTS
from pipeline.ingest.fhir import settings as fhir_settings
from pipeline.ingest.formats import TableFormat, parse_table_format
from pipeline.report.paper import DEFAULT as DEFAULT_PAPER
from pipeline.report.paper import PAPERS

# A public, built-in key: pseudonyms made with it can be recomputed by anyone who has
# the software and a list of candidate patient ids. Real runs must set their own key.
DEMO_PSEUDONYM_KEY = "order-audit-public-demo-key"
PSEUDONYM_KEY_ENV = "ORDER_AUDIT_PSEUDONYM_KEY"


@dataclass(frozen=True)
class Reporting:
    trend_months: int = 24
    # internal documents show every rate; one whose denominator is below this gets a
    # low-reliability mark and footnote (never a blank)
    low_reliability_denominator: int = 20
    # the printed report lists at most this many flagged cases per department, the most recent
    # first (the workbook lists every case)
    flagged_cases_per_department: int = 5
    # the paper the report, its PDF and the workbook are laid out for, landscape: a4 or letter (pipeline.report.paper)
    paper: str = DEFAULT_PAPER


@dataclass(frozen=True)
class DisplayNames:
    # department key as in the extracts -> the name printed; unlisted snake_case keys are
    # title-cased (interventional_radiology -> Interventional Radiology), others kept as they are
    departments: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Feed:
    # the shared metrics feed's small-cell rule (docs/METRICS_FEED.md): a count of 1 to
    # min_cell_count - 1 is never released (default: the CMS cell-size rule, 1-10 withheld)
    min_cell_count: int = 11


@dataclass(frozen=True)
class Privacy:
    key_file: str | None = None  # a file holding the pseudonym key; else $ORDER_AUDIT_PSEUDONYM_KEY


@dataclass(frozen=True)
class Spark:
    """[spark]: where the models run with engine = "spark" (pipeline/models/spark.py)."""

    master: str = "local[*]"  # a local Spark in a JVM beside the run, unless remote is given
    remote: str | None = None  # sc://HOST:PORT: a Spark Connect server (also $SPARK_REMOTE, --spark-remote)
    conf: dict[str, str] = field(default_factory=dict)  # more Spark settings, e.g. "spark.driver.memory" = "4g"
    # a folder (any URI Spark writes) holding the ledger and run history of Spark runs (pipeline/spark_state.py)
    state: str | None = None


@dataclass(frozen=True)
class Extract:
    """[extract]: how far a CSV, Parquet or workbook extract reaches, as the site declares it (a FHIR export's
    manifest declares it itself). The volume check judges the extract's first and last months by it
    (docs/DATA_QUALITY.md, "Months the volume check compares"). ISO 8601 text as written; see ``declared``."""

    data_since: str | None = None  # the extract holds every order from then on (a date: its midnight, site-local)
    data_through: str | None = None  # ... and up to then (a date: through its end, the next midnight site-local)

    def declared(self, name: str, site_timezone: str) -> dt.datetime | None:
        """``data_since`` or ``data_through`` as an instant (UTC): a time without an offset and a date are site-local;
        ``data_through`` as a date is the end of that day."""
        text = getattr(self, name)
        if text is None:
            return None
        when = _date_or_time(text)
        if not isinstance(when, dt.datetime):
            when = dt.datetime.combine(when + dt.timedelta(days=name == "data_through"), dt.time())
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(site_timezone))
        return when.astimezone(dt.UTC)


def _date_or_time(text: str) -> dt.date | dt.datetime:
    """An ISO 8601 date (2024-07-01) or time (2026-04-30T23:59:59Z, 2026-04-30 23:59:59, with or without an offset)."""
    if not any(c in text for c in "T :"):  # no time of day
        return dt.date.fromisoformat(text)
    return dt.datetime.fromisoformat(text)


def _parse_extract(values: object, where: str) -> Extract:
    """The [extract] section: each value a TOML date or time, or one in quotes; one line naming a bad one."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: write it as a section, [extract] data_since = 2024-07-01")
    known = [f.name for f in dataclasses.fields(Extract)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    out = {}
    for name, value in values.items():
        text = value.isoformat() if isinstance(value, (dt.date, dt.time)) else value
        try:
            if not isinstance(text, str) or isinstance(value, dt.time):
                raise ValueError
            _date_or_time(text.strip())
        except ValueError:
            raise ConfigError(
                f"{where}.{name}: {value!r} is not a date or a time (write it as 2024-07-01, or 2026-04-30T23:59:59Z)"
            ) from None
        out[name] = text.strip()
    return Extract(**out)


ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class Config:
    site_timezone: str = "America/New_York"
    engine: str = "duckdb"  # where the models run: duckdb, or spark ([spark] says which Spark)
    spark: Spark = field(default_factory=Spark)
    # audit id -> parameter -> value, over the manifest's defaults ([audits.<id>])
    audits: dict[str, dict] = field(default_factory=dict)
    # more folders holding audits (each an audit folder or a folder of them); also $ORDER_AUDIT_AUDITS_PATH
    audits_path: list[str] = field(default_factory=list)
    reporting: Reporting = field(default_factory=Reporting)
    feed: Feed = field(default_factory=Feed)
    privacy: Privacy = field(default_factory=Privacy)
    display_names: DisplayNames = field(default_factory=DisplayNames)
    local_code_map: str | None = None
    warehouse: str | None = None  # a warehouse kept across runs; none: a throw-away file per run
    # canonical column -> column name in the extract, per table
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    # how each table's file is written (delimiter, encoding, timestamp formats, sheet ...)
    formats: dict[str, TableFormat] = field(default_factory=dict)
    # the site's words for coded values, per table and column: site value -> contract value
    values: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    # tables (CSV, Parquet, Excel), fhir (a Bulk Data NDJSON export) or auto (told by the folder's files)
    input_format: str = "auto"
    fhir: fhir_settings.FhirSettings = field(default_factory=fhir_settings.FhirSettings)
    # how far the extract reaches, as the site declares it ([extract] data_since, data_through)
    extract: Extract = field(default_factory=Extract)
    source_path: str | None = None

    def format_of(self, table: str) -> TableFormat:
        return self.formats.get(table) or TableFormat()

    def as_dict(self) -> dict:
        """The configuration as recorded in run.json (no secrets in it)."""
        recorded = dataclasses.asdict(self)
        recorded["spark"]["remote"] = spark_address(self.spark.remote)
        # settings added off by default are recorded when set: a config that says nothing of them records what it did
        if self.extract == Extract():
            del recorded["extract"]
        for fmt in recorded["formats"].values():
            for name in ("code_with_description", "decimal_comma"):
                if not fmt[name]:
                    del fmt[name]
        return recorded


def spark_address(remote: str | None) -> str | None:
    """A Spark Connect address without its parameters (``sc://host:port/;token=...``: a token may ride in them)."""
    return re.sub(r"/?;.*$", "", remote) if remote else remote


_SECTIONS = {"reporting": Reporting, "feed": Feed, "privacy": Privacy, "display_names": DisplayNames, "spark": Spark}
_TABLES = tuple(c.name for c in CONTRACTS)
INPUT_FORMATS = ("auto", "tables", "fhir")


# settings that moved: where a config written for an earlier version must now say them
MOVED = {("Reporting", "min_cell_count"): "[feed] min_cell_count (the shared feed's small-cell rule)"}


def _section(cls, values: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    moved = [MOVED[(cls.__name__, name)] for name in sorted(unknown) if (cls.__name__, name) in MOVED]
    if moved:
        raise ConfigError(f"{where}: {', '.join(sorted(unknown))} moved: write it as {'; '.join(moved)}")
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    out = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if str(known[name].type).startswith("str") and not isinstance(value, str):  # key_file = 5: a traceback
            raise ConfigError(f'{where}.{name}: expected a text in quotes ({name} = "..."), got {value!r}')
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            # a count (int default) must be written whole: trend_months = 1.5 was cut to 1 without a word
            kinds = int if isinstance(default, int) else (int, float)
            if not isinstance(value, kinds) or isinstance(value, bool) or value < 0:
                what = "a whole number, 0 or more" if kinds is int else "a non-negative number"
                raise ConfigError(f"{where}.{name}: expected {what}, got {value!r}")
            value = type(default)(value)
        elif isinstance(default, dict):
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                shape = '"spark.setting" = "value"' if cls is Spark else 'key = "Display name"'
                raise ConfigError(f"{where}.{name}: expected a table of strings ({shape}), got {value!r}")
            value = {str(k): v for k, v in value.items()}
        out[name] = value
    return cls(**out)


def regular_file(p: Path, fix: str) -> None:
    """Refuse a path that is no regular file (a folder, a pipe, a device) in one line, before it is read: reading a
    pipe waits for a writer that never comes, reading /dev/zero fills memory. ``fix``: what to do, in words. The
    one check of every file a setting names (the config, the key file, the site code map)."""
    if not stat.S_ISREG(p.stat().st_mode):
        raise ConfigError(f"{p}: is not a regular file (a folder, a pipe or a device); {fix}")


def _read_toml(p: Path) -> dict:
    """The config file's settings; a path that is no readable UTF-8 TOML file is one line, not a traceback
    (a pipe or /dev/zero is refused before it is read: reading either never ends)."""
    try:
        regular_file(p, "pass the config file itself")
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found; pass an existing --config file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file ({exc.strerror}); check its permissions") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the config file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc}); fix the file") from None


def load_config(path: str | Path | None = None, **overrides) -> Config:
    """Read a TOML config (optional) and apply command-line overrides that are not None."""
    data: dict = {}
    if path is not None:
        data = _read_toml(Path(path))
    kwargs: dict = {"source_path": str(path) if path else None}
    for key, value in data.items():
        where = f"{path}: [{key}]"
        if key == "case":  # written for a version that had one audit
            raise ConfigError(
                f"{path}: [case] moved: each audit's settings are under [audits.<audit id>] "
                "(order-audit audits lists the ids and their parameters)"
            )
        if key in _SECTIONS:
            kwargs[key] = _section(_SECTIONS[key], value, where)
        elif key == "audits":
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise ConfigError(f"{where}: write each audit's settings as [audits.<audit id>] name = value")
            kwargs[key] = {k: dict(v) for k, v in value.items()}
        elif key == "audits_path":
            paths = [value] if isinstance(value, str) else value
            if not isinstance(paths, list) or not all(isinstance(v, str) for v in paths):
                raise ConfigError(f"{path}: audits_path: a folder or a list of folders")
            base = Path(path).parent
            kwargs[key] = [str(base / v) if not Path(v).is_absolute() else v for v in paths]
        elif key in ("site_timezone", "local_code_map", "warehouse", "input_format", "engine"):
            if not isinstance(value, str):  # a number or a table here was a traceback from deep in the run
                raise ConfigError(f'{path}: {key}: expected a text in quotes ({key} = "..."), got {value!r}')
            kwargs[key] = value
        elif key == "fhir":
            kwargs[key] = fhir_settings.parse(value, f"{path}: [fhir]")
        elif key == "extract":
            kwargs[key] = _parse_extract(value, f"{path}: [extract]")
        elif key == "columns":
            bad = set(value) - set(_TABLES)
            if bad:
                raise ConfigError(f"{where}: unknown table(s) {', '.join(sorted(bad))}; known: {', '.join(_TABLES)}")
            for t, m in value.items():
                if not isinstance(m, dict) or not all(isinstance(v, str) for v in m.values()):
                    raise ConfigError(f'{path}: [columns.{t}]: write each column as contract_name = "Extract name", got {m!r}')
            kwargs[key] = {t: dict(m) for t, m in value.items()}
        elif key == "formats":
            bad = set(value) - set(_TABLES)
            if bad:
                raise ConfigError(f"{where}: unknown table(s) {', '.join(sorted(bad))}; known: {', '.join(_TABLES)}")
            kwargs[key] = {t: parse_table_format(v, f"{path}: [formats.{t}]") for t, v in value.items()}
        elif key == "values":
            from pipeline.ingest.value_maps import parse_config_maps

            kwargs[key] = parse_config_maps(value, f"{path}: [values]")
        else:
            raise ConfigError(f"{path}: unknown setting '{key}'")
    for key, value in overrides.items():
        if value is not None:
            kwargs[key] = value
    cfg = Config(**kwargs)
    if cfg.input_format not in INPUT_FORMATS:
        raise ConfigError(f"input_format '{cfg.input_format}' is not one of {', '.join(INPUT_FORMATS)}")
    if cfg.reporting.paper.lower() not in PAPERS:
        raise ConfigError(
            f"{path or 'config'}: [reporting] paper = {cfg.reporting.paper!r}; one of {', '.join(map(repr, PAPERS))}"
        )
    cfg = dataclasses.replace(cfg, reporting=dataclasses.replace(cfg.reporting, paper=cfg.reporting.paper.lower()))
    if cfg.engine not in ENGINES:
        raise ConfigError(f"{path or 'config'}: engine = {cfg.engine!r}; one of {', '.join(ENGINES)}")
    try:
        ZoneInfo(cfg.site_timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name longer than a file name may be
        raise ConfigError(
            f"site time zone '{cfg.site_timezone}' is not an IANA zone name (for example America/New_York)"
        ) from None
    since, through = (cfg.extract.declared(n, cfg.site_timezone) for n in ("data_since", "data_through"))
    if since is not None and through is not None and since >= through:
        raise ConfigError(
            f"{path}: [extract] data_since = {cfg.extract.data_since} is not before data_through = "
            f"{cfg.extract.data_through}; fix one of them"
        )
    for name in ("local_code_map", "warehouse"):
        value = getattr(cfg, name)
        if value and path is not None and name in data and not Path(value).is_absolute():
            # a relative path in a config file is relative to that file
            cfg = dataclasses.replace(cfg, **{name: str(Path(path).parent / value)})
    return cfg


# a key file holds one key (a passphrase, 32 random bytes in hex); more than this is some other file
KEY_FILE_MOST_BYTES = 4096


def pseudonym_key(cfg: Config) -> tuple[bytes, bool]:
    """The pseudonym key and whether it is the public demo key. A ``key_file`` that is a pipe or a device is refused
    unread: ``/dev/zero`` took 23 GB of memory until the run was killed, a pipe hung it."""
    if cfg.privacy.key_file:
        path = Path(cfg.privacy.key_file)
        try:
            regular_file(path, "pass the file that holds the key")
            with path.open("rb") as fh:
                key = fh.read(KEY_FILE_MOST_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{cfg.privacy.key_file}: cannot read the pseudonym key file ({exc.strerror})") from None
        if len(key) > KEY_FILE_MOST_BYTES:
            raise ConfigError(
                f"{cfg.privacy.key_file}: holds more than {KEY_FILE_MOST_BYTES:,} bytes, more than a pseudonym key;"
                " set privacy.key_file to the file that holds the key"
            )
        key = key.strip()
        if not key:
            raise ConfigError(f"{cfg.privacy.key_file}: the pseudonym key file is empty")
        return key, False
    env = os.environ.get(PSEUDONYM_KEY_ENV)
    if env is not None and not env.strip():
        # set but blank is a secret that did not arrive (an empty Airflow Variable, a $(cat missing-file)), not a
        # choice of the demo key: it published pseudonyms anyone can recompute over the real key's, exit 0, as an
        # empty key file is refused above
        raise ConfigError(
            f"{PSEUDONYM_KEY_ENV} is set but empty: set it to the site's pseudonym key (a scheduler's secret that "
            "did not arrive?), or unset it to run with the public demo key (demos only)"
        )
    if env:
        return env.strip().encode(), False
    return DEMO_PSEUDONYM_KEY.encode(), True
