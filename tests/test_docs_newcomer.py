"""What a newcomer follows from the README alone, held to the code: every command line in README.md and docs/
parses with the options the commands have; the synopsis names every command and option; the inputs table every
contract table and column; the local code map's values are those a run accepts; the Outputs section is what a
run writes; every link and quoted path of the docs exists; *Your first extract* runs as written on a hospital's
extract; adding an audit's listing and step 9 hold for the toy audit; `validate` logs only its own lines."""

from __future__ import annotations

import re
import shlex

import click
import polars as pl
import pytest
from conftest import ROOT

from pipeline import audits
from pipeline.cli import cli
from pipeline.ingest.contract import CONTRACTS
from pipeline.ingest.formats import SUFFIXES
from pipeline.models.reference import CONTRASTS, OUT_OF_SCOPE, Vocabulary

README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _command_lines(text: str) -> list[tuple[str, str]]:
    """(command, its arguments) of every `order-audit <command> ...` in the text's code blocks and inline code;
    a synopsis line (with `[...]`) is left to the synopsis test."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`([^`\n]*order-audit [a-z]+[^`\n]*)`", text)
    names = "|".join(cli.commands)
    found = []
    for line in lines:
        for m in re.finditer(rf"(?:^|[\s;&(\"'=])(?:\S*/)?order-audit ({names})\b((?:[^#|>\"]|\"[^\"]*\")*)", line):
            # a line break's backslash and the stream number of a redirection (`2>> log`) are the shell's
            rest = re.sub(r"\s\d$", "", m.group(2).strip().rstrip("\\").strip())
            if "[" not in rest:
                found.append((m.group(1), rest))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_line_in_the_docs_parses_with_the_commands_options(doc):
    """A renamed or removed option leaves a doc's command failing as written (`No such option`); an inline mention
    may leave out required options (`order-audit run --no-validate`), but what it names must exist."""
    lines = _command_lines(doc.read_text(encoding="utf-8"))
    for name, rest in lines:
        command = cli.commands[name]
        try:
            args = shlex.split(rest)
            args = args[:-1] if args[-1:] == ["..."] else args  # a closing `...`: the rest of the line left out
            _, left_over, _ = command.make_parser(click.Context(command, info_name=name)).parse_args(args)
        except click.UsageError as exc:
            pytest.fail(f"{doc.name}: order-audit {name} {rest}: {exc.format_message()}")
        assert not left_over, f"{doc.name}: order-audit {name} {rest}: arguments the command does not take: {left_over}"


def test_the_command_lines_found_include_the_readmes_and_a_wrong_option_fails():
    """The extraction finds the commands a newcomer copies, and the parser it uses refuses an option no command has."""
    found = _command_lines(README)
    assert ("inspect", "--input /data/extract --write-config site/order-audit.toml") in found
    assert ("validate", "--input /data/extract --config site/order-audit.toml") in found
    assert ("run", "--input /data/export-2026-10 --out reports/") in found
    command = cli.commands["run"]
    with pytest.raises(click.NoSuchOption):
        command.make_parser(click.Context(command, info_name="run")).parse_args(["--inptu", "x"])


def test_the_running_it_synopsis_names_every_command_and_each_of_its_options():
    """`## Running it` is where a newcomer looks for what exists: a command or option added without a line there
    (`audits`, `run --audit`, `synth --start` had none) is found only by reading --help."""
    block = _section("Running it").split("```")[1]
    options: dict[str, str] = {}
    current = None
    for line in block.strip().splitlines():
        m = re.match(r"\.venv/bin/order-audit ([a-z]+)\b", line)
        if m:
            current = m.group(1)
            options[current] = ""
        options[current] += " " + line.split("#")[0]
    assert sorted(options) == sorted(cli.commands)
    for name, command in cli.commands.items():
        named = set(re.findall(r"--[a-z][a-z-]*", options[name]))
        wanted = {o for p in command.params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")}
        assert named == wanted - {"--help"}, (name, sorted(wanted - named - {"--help"}), sorted(named - wanted))


def _inputs_table() -> dict[str, tuple[set[str], set[str]]]:
    """The table of `## Inputs`: table name -> (required, optional) columns, values in parentheses left out."""
    rows = {}
    for line in _section("Inputs").splitlines():
        cells = [c.strip() for c in line.replace("\\|", "").strip().strip("|").split("|")]
        m = re.match(r"`([a-z_.]+)`", cells[0]) if len(cells) == 3 else None
        if m:
            cols = [{c.strip() for c in re.split(r",| or ", re.sub(r"\([^)]*\)", "", cell)) if c.strip()} for cell in cells[1:]]
            rows[m.group(1)] = (cols[0], cols[1])
    return rows


def test_the_inputs_table_lists_every_contract_table_and_column():
    """The patients table and the diagnoses' setting / is_principal / diagnosis_rank were read but in no table of
    the README: a site could not know that the low back pain audit uses the encounter's setting."""
    table = _inputs_table()
    for contract in CONTRACTS:
        assert table[contract.name] == (set(contract.required_columns), set(contract.optional_columns)), contract.name
    assert set(table) == {c.name for c in CONTRACTS} | {"local_code_map.csv"}
    lead = _section("Inputs").split("\n| table")[0]
    assert all(f"`{suffix}`" in lead for suffix in SUFFIXES), "the Inputs section names the file endings a table is found by"


def _value_list(name: str) -> list[str]:
    """The backticked values of the README's `- \\`name\\`: ...` item under *Map the local codes*."""
    step = _section("Your first extract").split("3. **Map the local codes.**")[1].split("\n4. ")[0]
    assert f"- `{name}`:" in step, f"README.md's *Map the local codes* lists no values of {name}"
    item = step.split(f"- `{name}`:", 1)[1].split("\n   - ")[0]
    return re.findall(r"`([A-Za-z_]+)`", item)


def test_the_local_code_map_values_the_readme_lists_are_those_a_run_accepts():
    shipped = audits.discover([])
    vocabulary = Vocabulary.of(shipped)
    assert set(_value_list("study_type")) == set(vocabulary.study_types) and OUT_OF_SCOPE in vocabulary.study_types
    assert set(_value_list("contrast")) == CONTRASTS - {""}
    assert "".join(_value_list("regions")[:4]) == "CTLS" and set(vocabulary.regions) == set("CTLS")
    maps = pl.concat([pl.read_csv(a.code_map_csv, infer_schema=False) for a in shipped if a.code_map_csv.is_file()])
    assert set(_value_list("modality")) == set(maps["modality"].unique())


def test_the_outputs_section_names_every_file_a_run_publishes_and_the_csf_leak_columns(small_input, tmp_path):
    """What `make demo` leaves under demo/output, as `## Outputs` says it: the site index and the run's record at
    the top (run.json there was in no line), each audit's folder holding the files of the table (report.pdf only
    with --pdf), and the CSF-leak audited_orders.csv and rejects_summary.csv columns the table lists, in order."""
    from conftest import run_cli

    out = tmp_path / "REPORTS"
    assert run_cli("run", "--input", small_input, "--out", out, "--no-validate", "--quiet").returncode == 0
    shipped = sorted(a.id for a in audits.discover([]))
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.html", "run.json", *shipped])
    section = _section("Outputs")
    assert "`DIR/index.html`" in section and "`DIR/run.json`" in section
    named = set()
    for line in section.splitlines():
        cells = line.strip().strip("|").split("|")
        if line.startswith("| `") and len(cells) == 2:
            first, *others = re.findall(r"`([^`]+)`", cells[0])
            named |= {first, *(first.rsplit(".", 1)[0] + o if o.startswith(".") else o for o in others)}
    for audit in shipped:
        held = {p.name for p in (out / audit).iterdir() if p.is_file()} | {"report.pdf"}
        # an audit with no department in its outputs (the small extract's low back pain audit) has no pages
        pages = (out / audit / "departments").is_dir()
        held |= {"departments/*.html"} if pages else set()
        expected = named if pages else named - {"departments/*.html"}
        assert held == expected, (audit, sorted(held ^ expected))
    assert (out / "csf_leak" / "departments").is_dir()
    row = next(line for line in section.splitlines() if line.startswith("| `audited_orders.csv`"))
    listed = [c.strip() for c in re.sub(r" \([^)]*\)", "", row.split("`order_id,", 1)[1].split("`")[0]).split(",")]
    header = (out / "csf_leak" / "audited_orders.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert ["order_id", *listed] == header
    row = next(line for line in section.splitlines() if line.startswith("| `rejects_summary.csv`"))
    listed = row.split("with its count: `", 1)[1].split("`")[0].split(", ")
    assert listed == (out / "csf_leak" / "rejects_summary.csv").read_text(encoding="utf-8").splitlines()[0].split(",")


def test_the_audits_doc_marks_optional_every_file_one_of_the_three_audits_goes_without():
    """docs/AUDITS.md's folder listing, against the shipped audits and the toy one a newcomer copies: an entry some
    audit lacks (the toy's value_sets.csv and DESIGN.md, the CSF-leak audit's expectations/) is marked optional,
    and every entry not so marked is in all three."""
    listing = (ROOT / "docs" / "AUDITS.md").read_text(encoding="utf-8").split("```")[1]
    entries: dict[str, str] = {}
    for line in listing.strip().splitlines()[1:]:
        m = re.match(r"  (\S+)\s", line)
        if m:
            name = m.group(1).rstrip("/")
            entries[name] = ""
        entries[name] += line
    folders = [*(ROOT / "audits").iterdir(), ROOT / "tests" / "toy_audit"]
    assert sorted(f.name for f in folders if (f / "audit.toml").is_file()) == ["csf_leak", "low_back_pain", "toy_audit"]
    for name, text in entries.items():
        missing = [f.name for f in folders if (f / "audit.toml").is_file() and not (f / name).exists()]
        assert not missing or "optional" in text, f"docs/AUDITS.md: {name} is not marked optional, and {missing} lack it"
    assert {name for name, text in entries.items() if "optional" not in text} == {"audit.toml", "rules.csv", "sql", "deck"}


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but hyphens dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


MARKDOWN = [
    *DOCS,
    *sorted(ROOT.glob("audits/*/*.md")),
    *sorted(ROOT.glob("audits/*/deck/*.md")),
    ROOT / "benchmarks" / "README.md",
]


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_of_the_docs_reaches_its_file_and_section(doc):
    """A newcomer follows the links: each relative one names a file of the repository and, for a Markdown file,
    a heading it has (code is left out: a regular expression in backticks is no link)."""
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        # a URL; or a regular expression a generated table quotes outside backticks (docs/DATA_QUALITY.md's
        # `[0-9A-Z](\.?[0-9A-Z]{1,4})`): no path holds a backslash
        if re.match(r"[a-z]+:", link) or "\\" in link:
            continue
        path, _, fragment = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        assert target.exists(), f"{doc.relative_to(ROOT)}: {link} names no file"
        if fragment and target.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", target.read_text(encoding="utf-8"), flags=re.S), re.M)
            assert fragment in {_slug(h) for h in headings}, f"{doc.relative_to(ROOT)}: {link}: no such section"


def test_the_rule_table_of_an_audit_outside_audits_is_printed_as_the_readme_says_and_an_unknown_id_is_named():
    """Step 9 of adding an audit: the toy audit's table, found through ORDER_AUDIT_AUDITS_PATH; without it the id
    printed nothing and exited 0, as if the audit had no rules."""
    import os
    import subprocess
    import sys

    from pipeline.models.registry import rules_markdown

    def registry(*args, **env):
        command = [sys.executable, "-m", "pipeline.models.registry", *args]
        environment = {k: v for k, v in os.environ.items() if k != "ORDER_AUDIT_AUDITS_PATH"} | env
        return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)

    toy = registry("toy_audit", ORDER_AUDIT_AUDITS_PATH="tests/toy_audit")
    (audit,) = [a for a in audits.discover([str(ROOT / "tests" / "toy_audit")]) if a.id == "toy_audit"]
    assert (toy.returncode, toy.stdout, toy.stderr) == (0, rules_markdown(audit) + "\n", "")
    unknown = registry("toy_audit")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == (
        "python -m pipeline.models.registry: no audit toy_audit found (found: csf_leak, low_back_pain); "
        "for one outside audits/, set ORDER_AUDIT_AUDITS_PATH to its folder\n"
    )


def test_the_development_sections_modules_are_where_it_says():
    """A newcomer reading the code starts from `## Development`: it named pipeline/load.py, audit.py and a sql/
    with staging/intermediate/marts folders, none of which is there (the modules moved into ingest/, report/ ...)."""
    part = _section("Development").split("- `pipeline/`", 1)[1].split("\n- `audits/", 1)[0]
    folder = ROOT / "pipeline"
    checked = 0
    for line in part.splitlines():
        sub = re.match(r"  - `([a-z_]+)/`", line)
        if sub:
            folder = ROOT / "pipeline" / sub.group(1)
        elif line.startswith("- `sql/`"):
            folder = ROOT / "sql"
        for name in re.findall(r"`([a-z_/]+(?:\.py|/))`", line):
            if sub and name == sub.group(1) + "/" or name == "sql/":
                continue
            base = ROOT / "pipeline" if name.startswith(("synth/", "ingest/")) else folder
            assert (base / name).exists(), f"README.md ## Development: {name} is not in {base.relative_to(ROOT)}"
            checked += 1
        for model in re.findall(r"`(stg_[a-z_]+)`", line):
            assert (ROOT / "sql" / f"{model}.sql").is_file(), model
    assert checked > 25


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_the_docs_quote_exists(doc):
    """`pipeline/...`, `tests/...`, `audits/...` in backticks are where a newcomer goes next; a module that moved
    leaves the doc pointing at nothing. A pattern (`<id>`, `*`) is left out, and so is benchmarks/data/, which
    `make bench` writes."""
    roots = "pipeline|tests|audits|examples|docs|benchmarks|sql|reports|expectations"
    for quoted in set(re.findall(rf"`((?:{roots})/[^`\s]*)`", doc.read_text(encoding="utf-8"))):
        path = quoted.split("::")[0].rstrip(",.")
        if not re.search(r"[<*{]", path) and not path.startswith("benchmarks/data/"):
            assert (ROOT / path).exists(), f"{doc.relative_to(ROOT)} quotes {quoted}, which is not in the repository"


def test_validate_logs_only_its_own_lines_and_quiet_leaves_no_info(small_input):
    """README, *Your first extract* step 4: `validate` is the newcomer's second command. Great Expectations sets its
    data context's logger to INFO, and every validate printed `order-audit: great_expectations...: Created
    temporary directory '/tmp/...' for ephemeral docs site`, with --quiet too ("only warnings and errors")."""
    from conftest import run_cli

    result = run_cli("validate", "--input", small_input)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [re.sub(r"\d+ rows?", "N rows", line) for line in lines] == [
        *(f"order-audit: parsed {table}: N rows read" for table in ("procedures", "imaging_orders", "diagnoses")),
        # the gate's own note, as a run logs it: three days of orders make no whole month to compare
        "order-audit: data-quality note orders.volume.monthly [src_imaging_orders]: the orders run from 2025-06-04 to "
        "2025-06-06, no calendar month whole: no month compared",
    ]
    quiet = run_cli("validate", "--input", small_input, "--quiet")
    assert (quiet.returncode, quiet.stderr) == (0, "")


@pytest.mark.slow
def test_your_first_extract_runs_as_written_on_a_hospital_shaped_extract(small_input, tmp_path):
    """*Your first extract*, its commands copied as written (the block, step 2's choice of day and month, then step
    4's validate and run), in a fresh folder, on an extract in a hospital's shape (EHR column names, pipe-delimited
    Windows-1252, US timestamps, other file names): `--write-config site/order-audit.toml` stopped with `folder not
    found` until the block made the folder."""
    import os
    import subprocess
    import sys

    from site_export import export_text

    extract = export_text(small_input, tmp_path / "extract")
    work = tmp_path / "analyst"
    work.mkdir()
    section = _section("Your first extract")
    block = [line.split("#")[0].strip() for line in section.split("```")[1].strip().splitlines()]
    step4 = re.findall(r"`(order-audit (?:validate|run) [^`]*)`", section)
    assert [c.split()[:2] for c in step4] == [["order-audit", "validate"], ["order-audit", "run"]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ORDER_AUDIT_PSEUDONYM_KEY": "newcomer-test-key"}
    for command in block + ["step 2"] + step4:
        if command == "step 2":  # the person's decision step 2 asks for: the export's US times are month first
            config = work / "site" / "order-audit.toml"
            text = config.read_text(encoding="utf-8")
            decided = re.sub(r"(?m)^# ((?:timestamp|date)_formats = .*# month first)", r"\1", text)
            assert decided != text, "step 2: the starter config left no day/month line to choose"
            config.write_text(decided, encoding="utf-8")
            continue
        line = command.replace("/data/extract", shlex.quote(str(extract)))
        line = re.sub(r"^order-audit ", f"{shlex.quote(sys.executable)} -m pipeline ", line)
        result = subprocess.run(line, shell=True, cwd=work, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
    assert (work / "site" / "order-audit.toml").is_file()
    assert (work / "reports" / "csf_leak" / "audited_orders.csv").is_file()


def test_the_fhir_docs_inspect_command_writes_an_exports_local_code_map(small_input, tmp_path):
    """docs/FHIR.md: `inspect --write-config` on an export writes the starter local_code_map.csv (it gave a warehouse
    query instead); the command as written, against an export holding one local code."""
    from conftest import run_cli
    from fhir_export import export_extract

    orders = small_input / "imaging_orders.csv"
    orders.write_text(orders.read_text() + "O5,MRN-1,2025-06-07 10:00:00,IMG88012,Neurology,G97.1,completed\n")
    export = tmp_path / "export"
    export_extract(small_input, export, variety=False)
    doc = (ROOT / "docs" / "FHIR.md").read_text(encoding="utf-8")
    (args,) = re.findall(r"`order-audit inspect --input /data/export-2026-10 (--write-config site/order-audit\.toml)`", doc)
    (tmp_path / "site").mkdir()
    result = run_cli("inspect", "--input", export, *args.replace("site/", f"{tmp_path}/site/").split())
    assert result.returncode == 0, result.stderr
    template = pl.read_csv(tmp_path / "site" / "local_code_map.csv", infer_schema=False)
    assert template.select("code_system", "code").rows() == [
        ("http://hospital.example.org/fhir/CodeSystem/local-exam-codes", "IMG88012")
    ]


def test_what_to_extract_quotes_the_audits_windows_in_force():
    """*What to extract* tells a site how far before and after its months to reach: the days it quotes are the
    manifests' defaults, so a changed window changes the advice."""
    shipped = {a.id: a for a in audits.discover([])}
    text = " ".join(_section("Your first extract").split("**What to extract.**")[1].split("\n\n")[0].split())

    def maturity(audit_id: str) -> int:
        audit = shipped[audit_id]
        return int(sum(audit.parameters[d] if isinstance(d, str) else d for d in audit.maturity_days))

    csf, lbp = shipped["csf_leak"].parameters, shipped["low_back_pain"].parameters
    assert f"{maturity('csf_leak')} days past its end" in text and maturity("csf_leak") >= maturity("low_back_pain")
    parts = (csf["leak_evidence_days"], csf["audit_window_days"], csf["outside_window_context_days"])
    assert "(the CSF-leak audit: {:g} days of leak evidence, a {:g}-day window, {:g} days of context;".format(*parts) in text
    assert f"the low back pain audit: {maturity('low_back_pain')} days)" in text
    assert f"the low back pain audit's {lbp['negative_history_days']}-day look-back" in text
    months = {v for k, v in lbp.items() if k.endswith("_lookback_months")}
    assert months == {12} and "its 12-month red-flag windows" in text and "at least 12 months before" in text
