"""Imported last by the tests' fork server (cli_child.PRELOAD): every audit's models parsed, so the commands forked
from it find the tables each model reads in runner's cache (keyed by the SQL's text) instead of parsing the same
files again, a tenth of a small run's CPU. A model whose text a test changes (a config's parameters, an audit of its
own) is parsed by the command as before."""

from pipeline import audits
from pipeline.models import runner

for _model in runner.core_models() + [m for a in audits.discover() for m in runner.audit_models(a)]:
    _ = _model.reads  # the property fills the cache
