"""A benchmark run's record: the ``result.json`` schema, its validation, and the rows of ``RESULTS.md``.

``RESULTS.md`` holds one table, "Runs", with one row per run and test ground truth (an ``isbi2015`` run gives
two rows: mean of the annotators and senior alone). The runner appends rows; ``benchmarks.summary`` rewrites
only the part of the file below the table (fold means), so appended rows are never lost.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

SCHEMA = 'cldetection-benchmark/1'
SDR_KEYS: tuple[str, ...] = ('SDR 2.0mm', 'SDR 2.5mm', 'SDR 3.0mm', 'SDR 4.0mm')
METRIC_KEYS: tuple[str, ...] = ('MRE', 'MRE_SD', *SDR_KEYS)
#: ``cpu``: the quick reduced schedule of every config; ``config``: the config's own schedule.
BUDGETS: tuple[str, ...] = ('cpu', 'config')

RESULTS_TITLE = '# Benchmark results'
RUNS_HEADING = '## Runs'
SUMMARY_HEADING = '## Summary'
RESULTS_INTRO = (
    'Written by `python -m benchmarks.run` (one row per run and test ground truth; rows are appended) and '
    '`python -m benchmarks.summary` (the summary below the table is regenerated). MRE and SD in mm, SDR in %; '
    'training speed in images/s (training iterations only), inference in ms per image on the step 5 path '
    '(model load excluded), peak RSS of the training process. See `benchmarks/README.md` for the protocols '
    'and budgets.')
COLUMNS: tuple[str, ...] = ('Date', 'Protocol', 'Split', 'Ground truth', 'Config', 'Budget', 'MRE', 'SD',
                            'SDR 2mm', 'SDR 2.5mm', 'SDR 3mm', 'SDR 4mm', 'Train img/s', 'Infer ms/img',
                            'Train peak RSS GiB', 'Hardware', 'Commit')

# field -> (required type(s), description); nested dicts are checked by validate_result below.
_TOP_LEVEL: dict[str, tuple[type | tuple[type, ...], str]] = {
    'schema': (str, 'schema version'),
    'protocol': (str, 'cl2023 or isbi2015'),
    'split': (str, 'test split, e.g. "fold 0 of 5"'),
    'fold': ((int, type(None)), 'cl2023 fold, null for isbi2015'),
    'config': (str, 'config file as given'),
    'budget': (str, 'cpu or config'),
    'budget_overrides': (dict, 'what the budget changed in the config'),
    'date': (str, 'ISO 8601 date and time of the run'),
    'git_commit': (str, 'commit of the code that ran'),
    'hardware': (dict, 'cpu, cores, memory, gpu'),
    'data': (dict, 'image counts and landmarks'),
    'primary_ground_truth': (str, 'key of metrics that is the headline figure'),
    'metrics': (dict, 'ground truth -> MRE, MRE_SD, SDR r mm'),
    'per_landmark_mre': (dict, 'ground truth -> list of per-landmark MRE'),
    'training': (dict, 'images_per_s, wall_s, peak_rss_bytes, ...'),
    'inference': (dict, 'ms_per_image, images, device'),
    'checkpoint': (str, 'tested checkpoint (best on valid, or the last with train+valid), relative to the work dir'),
}


class ResultSchemaError(ValueError):
    """A result that does not follow the schema; the message lists every problem found."""


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_metrics(name: str, metrics: Any, problems: list[str]) -> None:
    if not isinstance(metrics, dict):
        problems.append(f'metrics.{name} is not an object')
        return
    for key in METRIC_KEYS:
        if not _finite_number(metrics.get(key)):
            problems.append(f'metrics.{name}.{key} is missing or not a finite number')
    if all(_finite_number(metrics.get(k)) for k in METRIC_KEYS):
        if metrics['MRE'] < 0 or metrics['MRE_SD'] < 0:
            problems.append(f'metrics.{name}: MRE and SD must be >= 0')
        sdrs = [metrics[k] for k in SDR_KEYS]
        if any(not 0 <= v <= 100 for v in sdrs):
            problems.append(f'metrics.{name}: SDR values must be percentages in 0..100')
        elif any(a > b for a, b in zip(sdrs, sdrs[1:])):
            problems.append(f'metrics.{name}: SDR must not decrease with the radius')


def validate_result(result: Any) -> dict:
    """Check a ``result.json`` document against the schema; return it, or raise ``ResultSchemaError``."""
    if not isinstance(result, dict):
        raise ResultSchemaError('result is not a JSON object')
    problems: list[str] = []
    for key, (types, what) in _TOP_LEVEL.items():
        if key not in result:
            problems.append(f'missing {key} ({what})')
        elif not isinstance(result[key], types):
            problems.append(f'{key} has type {type(result[key]).__name__} ({what})')
    if problems:
        raise ResultSchemaError('; '.join(problems))
    if result['schema'] != SCHEMA:
        problems.append(f'schema is {result["schema"]!r}, expected {SCHEMA!r}')
    if result['budget'] not in BUDGETS:
        problems.append(f'budget is {result["budget"]!r}, expected one of {BUDGETS}')
    if (result['protocol'] == 'cl2023') != isinstance(result['fold'], int):
        problems.append('fold must be an integer for cl2023 and null otherwise')
    if not re.fullmatch(r'[0-9a-f]{7,40}(\+dirty)?|unknown', result['git_commit']):
        problems.append(f'git_commit {result["git_commit"]!r} is not a commit hash')
    for key in ('cpu', 'cores', 'memory_gib', 'gpu'):
        if key not in result['hardware']:
            problems.append(f'hardware.{key} missing')
    num_landmarks = result['data'].get('num_landmarks')
    if not isinstance(num_landmarks, int) or num_landmarks < 1:
        problems.append('data.num_landmarks missing or not a positive integer')
    for key in ('train_images', 'valid_images', 'test_images'):
        if not isinstance(result['data'].get(key), int):
            problems.append(f'data.{key} missing or not an integer')
    if result['primary_ground_truth'] not in result['metrics']:
        problems.append(f'primary_ground_truth {result["primary_ground_truth"]!r} has no metrics')
    for name, metrics in result['metrics'].items():
        _check_metrics(name, metrics, problems)
        rows = result['per_landmark_mre'].get(name)
        if not isinstance(rows, list) or (isinstance(num_landmarks, int) and len(rows) != num_landmarks):
            problems.append(f'per_landmark_mre.{name} must list {num_landmarks} landmarks')
        elif not all(isinstance(r, dict) and _finite_number(r.get('MRE')) for r in rows):
            problems.append(f'per_landmark_mre.{name}: every landmark needs a finite MRE')
    for section, keys in (('training', ('images_per_s', 'wall_s', 'peak_rss_bytes', 'epochs')),
                          ('inference', ('ms_per_image', 'images'))):
        for key in keys:
            value = result[section].get(key)
            if not _finite_number(value) or value <= 0:
                problems.append(f'{section}.{key} missing or not a positive number')
    if problems:
        raise ResultSchemaError('; '.join(problems))
    return result


# ------------------------------------------------------------------------------------------- RESULTS.md
def hardware_label(hardware: dict) -> str:
    """Short hardware description for a table cell, e.g. ``AMD EPYC (AVX2), 2 cores``, ``AMD EPYC (AVX512, bf16),
    2 cores`` or ``NVIDIA H100 (AMD EPYC ...)``; results recorded before the vector unit was (``AMD EPYC, 2
    cores``) keep their label."""
    cpu = hardware['cpu']
    if hardware.get('cpu_capability'):
        cpu += f' ({hardware["cpu_capability"]}{", bf16" if hardware.get("cpu_bf16") else ""})'
    cpu = f'{cpu}, {hardware["cores"]} cores'
    return f'{hardware["gpu"]} ({cpu})' if hardware.get('gpu') else cpu


def budget_label(result: dict) -> str:
    """The budget, with the epochs when ``--max-epochs`` shortened it (e.g. ``config, 40 ep``) and
    ``train+valid`` when the valid images were trained on (``--train-on-valid``) and ``+N label`` when N extra
    images were (``--extra-train``, e.g. ``+107 pseudo``) and ``N/M img`` when N of those M images were
    (``--train-images``, e.g. ``77/154 img``): a different training set, so ``benchmarks.summary``
    keeps those runs in a group of their own."""
    overrides = result['budget_overrides']
    parts = [result['budget']]
    if overrides.get('shortened_to_epochs'):
        parts.append(f'{overrides["shortened_to_epochs"]} ep')
    if overrides.get('train_on_valid'):
        parts.append('train+valid')
    if overrides.get('extra_train'):
        parts.append(f'+{overrides["extra_train"]["images"]} {overrides["extra_train"]["label"]}')
    if overrides.get('train_subset'):
        parts.append(f'{overrides["train_subset"]["images"]}/{overrides["train_subset"]["of"]} img')
    return ', '.join(parts)


def result_rows(result: dict) -> list[dict[str, str]]:
    """The ``RESULTS.md`` rows of one validated result: one per test ground truth, the primary first."""
    names = [result['primary_ground_truth']] + [n for n in result['metrics'] if n != result['primary_ground_truth']]
    commit = result['git_commit']
    rows = []
    for name in names:
        m = result['metrics'][name]
        rows.append({
            'Date': result['date'][:10], 'Protocol': result['protocol'], 'Split': result['split'],
            'Ground truth': name, 'Config': Path(result['config']).stem, 'Budget': budget_label(result),
            'MRE': f'{m["MRE"]:.3f}', 'SD': f'{m["MRE_SD"]:.3f}',
            **{col: f'{m[key]:.2f}' for col, key in zip(COLUMNS[8:12], SDR_KEYS)},
            'Train img/s': f'{result["training"]["images_per_s"]:.2f}',
            'Infer ms/img': f'{result["inference"]["ms_per_image"]:.0f}',
            'Train peak RSS GiB': f'{result["training"]["peak_rss_bytes"] / 2 ** 30:.2f}',
            'Hardware': hardware_label(result['hardware']),
            # 12 hex digits at most, then the +dirty mark ('f954cfe+dirty' stays whole, not 'f954cfe+dirt+dirty')
            'Commit': commit.removesuffix('+dirty')[:12] + ('+dirty' if commit.endswith('+dirty') else ''),
        })
    return rows


def format_row(cells: Iterable[str]) -> str:
    """One Markdown table row (a ``|`` inside a cell becomes ``/``)."""
    return '| ' + ' | '.join(str(c).replace('|', '/') for c in cells) + ' |'


def parse_table(table: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a Markdown table given as its lines (header, separator, rows) as dicts keyed by the header;
    a row whose number of cells differs from the header's is skipped."""
    if not table:
        return []
    header = [c.strip() for c in table[0].strip('|').split('|')]
    rows = []
    for line in table[2:]:
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == len(header):
            rows.append(dict(zip(header, cells)))
    return rows


def _table_lines(lines: list[str]) -> tuple[int, int] | None:
    """``(first, end)`` line indices of the Runs table (header row included), or None."""
    try:
        start = lines.index(RUNS_HEADING)
    except ValueError:
        return None
    first = next((i for i in range(start + 1, len(lines)) if lines[i].startswith('|')), None)
    if first is None:
        return None
    end = first
    while end < len(lines) and lines[end].startswith('|'):
        end += 1
    return first, end


def append_rows(results_md: str | Path, rows: list[dict[str, str]]) -> Path:
    """Append ``rows`` to the Runs table of ``results_md``, creating the file / table header when absent."""
    results_md = Path(results_md)
    text = results_md.read_text(encoding='utf-8') if results_md.is_file() else ''
    lines = text.splitlines()
    new = [format_row(row[c] for c in COLUMNS) for row in rows]
    span = _table_lines(lines)
    if span is None:
        if not lines:
            lines = [RESULTS_TITLE, '', RESULTS_INTRO, '']
        header = [RUNS_HEADING, '', format_row(COLUMNS), format_row('---' for _ in COLUMNS)]
        lines = lines + ([''] if lines and lines[-1] else []) + header + new
    else:
        lines = lines[:span[1]] + new + lines[span[1]:]
    results_md.parent.mkdir(parents=True, exist_ok=True)
    results_md.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return results_md


def read_rows(results_md: str | Path) -> list[dict[str, str]]:
    """The Runs table of ``results_md`` as dicts keyed by column name (empty if there is no table)."""
    results_md = Path(results_md)
    if not results_md.is_file():
        return []
    lines = results_md.read_text(encoding='utf-8').splitlines()
    span = _table_lines(lines)
    return [] if span is None else parse_table(lines[span[0]:span[1]])


def replace_summary(results_md: str | Path, summary_lines: list[str]) -> Path:
    """Replace everything after the Runs table with ``summary_lines`` (the table itself is kept as is)."""
    results_md = Path(results_md)
    lines = results_md.read_text(encoding='utf-8').splitlines() if results_md.is_file() else []
    span = _table_lines(lines)
    head = lines[:span[1]] if span else lines
    results_md.write_text('\n'.join(head + [''] + summary_lines).rstrip('\n') + '\n', encoding='utf-8')
    return results_md


# ------------------------------------------------------------------- sections written by other commands
def read_lines(results_md: str | Path) -> list[str]:
    """The lines of ``results_md`` (none when it does not exist yet)."""
    results_md = Path(results_md)
    return results_md.read_text(encoding='utf-8').splitlines() if results_md.is_file() else []


def section_span(lines: list[str], start_mark: str, end_marker: str, source: str | Path = 'RESULTS.md'
                 ) -> tuple[int, int] | None:
    """``(start, end)`` line indices of a command's delimited section (the line starting with ``start_mark`` and
    the line ``end_marker``), or None when there is none; one marker without the other is an error."""
    from cldetection.errors import fail

    start = next((i for i, line in enumerate(lines) if line.startswith(start_mark)), None)
    end = lines.index(end_marker) if end_marker in lines else None
    if (start is None) != (end is None):
        fail(source, f'has only one of the markers {start_mark!r} and {end_marker!r}; fix it by hand')
    return None if start is None else (start, end)


def section_rows(lines: list[str], start_mark: str, end_marker: str, source: str | Path = 'RESULTS.md'
                 ) -> list[dict[str, str]]:
    """The rows of the table in a command's delimited section of ``lines`` (none without the section)."""
    span = section_span(lines, start_mark, end_marker, source)
    return parse_table([line for line in lines[span[0]:span[1]] if line.startswith('|')]) if span else []


def table_section(start_line: str, heading: str, intro: str, columns: Sequence[str],
                  rows: Iterable[dict[str, str]], end_marker: str) -> list[str]:
    """The lines of a command's section holding one table: markers, heading, intro, ``rows`` under ``columns``
    (a cell a row lacks is empty)."""
    return [start_line, heading, '', intro, '', format_row(columns), format_row(['---'] * len(columns)),
            *(format_row([row.get(c, '') for c in columns]) for row in rows), end_marker]


def write_section(results_md: str | Path, section: list[str], start_mark: str, end_marker: str,
                  above: str = RUNS_HEADING) -> Path:
    """Put ``section`` (its first line starts with ``start_mark``, its last is ``end_marker``) in place of the file's
    section, or, in a file without one, just above the first line starting with ``above`` (at the end without
    one); a missing file is created with the title and intro."""
    results_md = Path(results_md)
    lines = read_lines(results_md) or [RESULTS_TITLE, '', RESULTS_INTRO, '']
    span = section_span(lines, start_mark, end_marker, results_md)
    if span is not None:
        lines = lines[:span[0]] + section + lines[span[1] + 1:]
    else:
        at = next((i for i, line in enumerate(lines) if line.startswith(above)), None)
        lines = lines[:at] + section + [''] + lines[at:] if at is not None else \
            lines + ([''] if lines and lines[-1] else []) + section
    results_md.parent.mkdir(parents=True, exist_ok=True)
    results_md.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return results_md
