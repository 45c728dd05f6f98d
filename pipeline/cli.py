"""The order-audit command line: commands, options, exit codes; nothing else.

Exit codes: 0 ok, 1 usage or configuration error, 2 input error, 3 data-quality gate
failed, 4 another run holds the warehouse.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from pipeline.errors import EXIT_USAGE, AuditError
from pipeline.logs import setup_logging

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _month(ctx, param, value):
    if value is not None and not MONTH.match(value):
        raise click.BadParameter(f"'{value}' is not a month like 2026-10")
    return value


def _logging_options(f):
    f = click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                     help="Log lines on stderr as text or one JSON object per line (for schedulers).")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")(f)
    f = click.option("--verbose", "-v", is_flag=True, help="Debug detail on stderr.")(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="order-audit")
def cli():
    """Audit imaging orders against clinical guidelines (first audit: imaging for suspected
    CSF leak after a lumbar procedure that can puncture the dura)."""


@cli.command()
@click.option("--input", "input_dir", required=True, type=click.Path(path_type=Path),
              help="Folder with procedures, imaging_orders and optionally diagnoses (.csv or .parquet), "
                   "and optionally local_code_map.csv.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--warehouse", "warehouse_path", type=click.Path(path_type=Path), default=None,
              help="DuckDB warehouse file [default: <out>/warehouse.duckdb].")
@click.option("--site-timezone", default=None, help="IANA zone for times without an offset [America/New_York].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="TOML settings file.")
@click.option("--month", callback=_month, default=None, help="Audit the cases whose index procedure is in this month (YYYY-MM).")
@click.option("--pdf", is_flag=True, help="Also write report.pdf.")
@click.option("--reid-file", type=click.Path(path_type=Path), default=None,
              help="Write the pseudonym -> patient id crosswalk here (restricted: mode 0600).")
@_logging_options
def run(input_dir, out_dir, warehouse_path, site_timezone, config_path, month, pdf, reid_file,
        log_format, quiet, verbose):
    """Load the extracts, audit every order, and write the report and data outputs."""
    from pipeline.config import load_config
    from pipeline.run import RunOptions, execute

    setup_logging(log_format, 1 if verbose else (-1 if quiet else 0))
    cfg = load_config(config_path, site_timezone=site_timezone)
    opts = RunOptions(input_dir=input_dir, out_dir=out_dir,
                      warehouse_path=warehouse_path or out_dir / "warehouse.duckdb",
                      first_month=month, last_month=month, pdf=pdf, reid_file=reid_file)
    execute(opts, cfg)


@cli.command()
@click.option("--patients", type=click.IntRange(min=1), default=20000, show_default=True)
@click.option("--months", type=click.IntRange(min=1), default=24, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--start", "start_month", callback=_month, default="2024-01", show_default=True,
              help="First month of the generated data (YYYY-MM).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--site-timezone", default="America/New_York", show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@_logging_options
def synth(patients, months, seed, start_month, fmt, site_timezone, out_dir, log_format, quiet, verbose):
    """Generate synthetic extracts with their ground truth (deterministic per seed)."""
    from pipeline.synth import generate

    setup_logging(log_format, 1 if verbose else (-1 if quiet else 0))
    summary = generate(out_dir, patients=patients, months=months, seed=seed, start_month=start_month,
                       fmt=fmt, site_timezone=site_timezone)
    if not quiet:
        click.echo(f"wrote synthetic extracts to {out_dir}: {summary}", err=True)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="order-audit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("order-audit: aborted", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except AuditError as exc:
        click.echo(f"order-audit: error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("order-audit: interrupted; the warehouse and outputs keep their previous state", err=True)
        sys.exit(130)
    sys.exit(0)
