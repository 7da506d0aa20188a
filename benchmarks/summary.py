"""Summarise ``benchmarks/RESULTS.md``: seed means, what each technique bought, fold means, ``results.png``.

    python -m benchmarks.summary [--results benchmarks/RESULTS.md] [--plot benchmarks/results.png]

The summary replaces whatever follows the Runs table, and is the one source of every derived figure the README,
``docs/`` and the config comments quote (``tests/test_figures.py`` checks that they quote RESULTS.md):

- **Seed means** (``RECIPES``): the runs of one named recipe (a config, its budgets and the hardware, sometimes
  the commits) per protocol, split, test ground truth and budget, each run's MRE and SDR 2 mm and their mean.
  A row's ``(seed N)`` / ``seed N`` and notes in parentheses are dropped before matching, and rows with the
  same accuracy figures are one deterministic run recorded twice, counted once.
- **What each technique bought** (``COMPARISONS``): a recipe against the recipe it changed, on every protocol /
  split / ground truth both ran: the two seed means and the difference (of the rounded means shown).
- **Fold means**: rows of one configuration grouped by protocol, test ground truth, budget and hardware; for
  ``cl2023`` the latest row of each fold is kept and the folds are averaged (mean and sample SD over folds, with
  the number of folds: a mean over fewer than 5 folds says so), with ratios against ``seed-baseline``.
"""
from __future__ import annotations

import argparse
import logging
import re
import statistics
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence

from cldetection.errors import fail, run_cli

from .data import DEFAULT_SHARED_DATA, ISBI_TEST1_IMAGES, annotator_disagreement, read_isbi_annotations
from .process import REPO_ROOT
from .results import SUMMARY_HEADING, read_rows, replace_summary

logger = logging.getLogger(__name__)
DEFAULT_RESULTS = REPO_ROOT / 'benchmarks' / 'RESULTS.md'
DEFAULT_PLOT = REPO_ROOT / 'benchmarks' / 'results.png'
BASELINE_PREFIX = 'seed-baseline'


@dataclass(frozen=True)
class Reference:
    """A published figure to compare with (from ``../shared/data/README.md``)."""
    protocol: str  # 'cl2023' or 'isbi2015'
    label: str
    mre: float
    sdr2: float


REFERENCES: tuple[Reference, ...] = (
    Reference('isbi2015', 'Lindner et al. 2016', 1.67, 75.0),
    Reference('isbi2015', 'Chen et al. 2019', 1.17, 86.7),
    Reference('isbi2015', 'Zhong et al. 2019', 1.12, 86.9),
    Reference('cl2023', 'CL-Detection 2023 best (official test set)', 1.518, 75.72),
    Reference('cl2023', 'original MMPose baseline (its own 50-image split)', 2.199, 65.47),
)
_FIGURES = ('MRE', 'SDR 2mm', 'SDR 2.5mm', 'SDR 3mm', 'SDR 4mm', 'Train img/s', 'Infer ms/img')


@dataclass
class Group:
    """One configuration on one protocol / ground truth / budget / hardware, its folds averaged."""
    protocol: str
    ground_truth: str
    config: str
    budget: str
    hardware: str
    per_split: dict[str, dict[str, float]]  # split -> figure -> value (the latest run of that split)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.protocol, self.ground_truth, self.budget, self.hardware

    @property
    def splits(self) -> list[str]:
        return sorted(self.per_split)

    def _values(self, figure: str) -> list[float]:
        return [v[figure] for v in self.per_split.values() if figure in v]

    @cached_property
    def mean(self) -> dict[str, float]:
        """Mean over splits of each figure (NaN when no split has it)."""
        return {f: statistics.fmean(v) if (v := self._values(f)) else float('nan') for f in _FIGURES}

    @cached_property
    def sd(self) -> dict[str, Optional[float]]:
        """Sample SD over splits of each figure; None for a single split."""
        return {f: statistics.stdev(v) if len(v := self._values(f)) > 1 else None for f in _FIGURES}


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def group_rows(rows: Sequence[dict[str, str]]) -> list[Group]:
    """Average the latest row of each split (fold) per configuration / protocol / ground truth / budget / hardware."""
    latest: dict[tuple, dict[str, dict[str, str]]] = {}
    for row in rows:  # rows are in run order: a later run of the same fold replaces the earlier one
        key = (row['Protocol'], row['Ground truth'], row['Config'], row['Budget'], row['Hardware'])
        latest.setdefault(key, {})[row['Split']] = row
    groups = [Group(*key, {split: {f: v for f in _FIGURES if (v := _number(r.get(f, ''))) is not None}
                           for split, r in by_split.items()})
              for key, by_split in latest.items()]
    return sorted(groups, key=lambda g: (g.protocol, g.ground_truth, g.budget, g.hardware, g.config))


def _baseline(group: Group, groups: Sequence[Group]) -> Optional[Group]:
    return next((g for g in groups if g.key == group.key and g.config.startswith(BASELINE_PREFIX)), None)


def paired_ratio(group: Group, base: Optional[Group], figure: str, invert: bool = False) -> Optional[float]:
    """``group`` / ``base`` (``base`` / ``group`` when ``invert``) of ``figure`` averaged over the splits both ran.

    Folds differ in difficulty, so a config run on folds 0-2 is only compared with the baseline's folds 0-2,
    even when one of them has more folds in RESULTS.md. None without a common split.
    """
    if base is None:
        return None
    common = [s for s, values in group.per_split.items()
              if figure in values and figure in base.per_split.get(s, {})]
    if not common:
        return None
    ours = statistics.fmean(group.per_split[s][figure] for s in common)
    theirs = statistics.fmean(base.per_split[s][figure] for s in common)
    numerator, denominator = (theirs, ours) if invert else (ours, theirs)
    return numerator / denominator if denominator else None


def _ratio(value: Optional[float]) -> str:
    return f'{value:.2f}' if value is not None else '–'


def _cell(group: Group, figure: str, digits: int) -> str:
    value, sd = group.mean[figure], group.sd[figure]
    return f'{value:.{digits}f}' + (f' ± {sd:.{digits}f}' if sd is not None else '')


def summary_lines(groups: Sequence[Group], disagreement: Optional[dict[str, float]] = None,
                  rows: Sequence[dict[str, str]] = (), engine_rows: Sequence[dict[str, str]] = ()) -> list[str]:
    """Markdown of the summary: seed means and comparisons of ``rows`` (when given), a table of groups (fold
    mean ± SD) with ratios to seed-baseline, the speed per CPU class (with ``engine_rows``, the step 5 engine
    section's rows), references."""
    lines = [SUMMARY_HEADING, '']
    if rows:
        lines += seed_mean_lines(rows) + [''] + comparison_lines(rows) + ['', FOLD_MEANS_HEADING, '']
    lines += ['Generated by `python -m benchmarks.summary`. `cl2023`: mean ± SD over the folds run (column Folds); '
             'ratios are against `seed-baseline` on the same protocol, ground truth, budget and hardware, '
             'over the folds both ran (MRE ratio < 1 and speed ratio > 1 favour the config).', '']
    header = ('Protocol', 'Ground truth', 'Config', 'Budget', 'Folds', 'MRE', 'SDR 2mm', 'SDR 2.5mm', 'SDR 3mm',
              'SDR 4mm', 'Train img/s', 'Infer ms/img', 'MRE ratio', 'Train speed ratio', 'Infer speed ratio',
              'Hardware')
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for g in groups:
        base = _baseline(g, groups)
        folds = str(len(g.splits)) if g.protocol == 'cl2023' else g.splits[0]
        cells = [g.protocol, g.ground_truth, g.config, g.budget, folds, _cell(g, 'MRE', 3),
                 *(_cell(g, f, 2) for f in ('SDR 2mm', 'SDR 2.5mm', 'SDR 3mm', 'SDR 4mm')),
                 _cell(g, 'Train img/s', 2), _cell(g, 'Infer ms/img', 0),
                 _ratio(paired_ratio(g, base, 'MRE')), _ratio(paired_ratio(g, base, 'Train img/s')),
                 _ratio(paired_ratio(g, base, 'Infer ms/img', invert=True)), g.hardware]
        lines.append('| ' + ' | '.join(cells) + ' |')
    if rows:
        lines += [''] + speed_lines(rows, engine_rows)
    lines += ['', 'Published reference results (from `../shared/data/README.md`; full-schedule GPU training, '
                  'so not budget-matched):', '']
    lines += [f'- {r.protocol}: {r.label}: MRE {r.mre:.3f} mm, SDR 2 mm {r.sdr2:.2f} %' for r in REFERENCES]
    if disagreement:
        lines.append(f'- isbi2015: junior vs senior annotator on Test1 (measured here from landmarks.csv): '
                     f'MRE {disagreement["MRE"]:.3f} mm, SDR 2 mm {disagreement["SDR 2.0mm"]:.2f} %')
    return lines


# ------------------------------------------------------------------------------------ speed per CPU class
SPEED_HEADING = '### Speed per CPU class (issue 40)'
#: The user's question per CPU class, in the order of the table; a recorded CPU is put in a class by its flags.
CPU_CLASSES = ('bfloat16 hardware (AVX512-BF16 or AMX)', 'AVX-512 without bfloat16', 'AVX2 only')
#: cl2023's training set with --train-on-valid, and the default's epochs: the training run a user makes.
CL2023_TRAIN_IMAGES, DEFAULT_EPOCHS = 154, 40


def cpu_class(cpu: str) -> str:
    """The class of a Runs row's Hardware cell (``AMD EPYC (AVX2), 2 cores``, ``... (AVX512, bf16) ...``) or an engine
    row's CPU cell (``... (AVX2 yes, AVX-512 no, AVX512-BF16 no, AMX no)``); '' when the cell does not say."""
    if 'bf16' in cpu or 'AVX512-BF16 yes' in cpu or 'AMX yes' in cpu:
        return CPU_CLASSES[0]
    if '(AVX512' in cpu or 'AVX-512 yes' in cpu:
        return CPU_CLASSES[1]
    if '(AVX2' in cpu or 'AVX2 yes' in cpu:
        return CPU_CLASSES[2]
    return ''


def read_engine_rows(results_md: Path) -> list[dict[str, str]]:
    """The rows of ``benchmarks.engine_speed``'s section of ``results_md`` (none without the section)."""
    from .engine_speed import SECTION_END, SECTION_START
    from .results import read_lines, section_rows

    return section_rows(read_lines(results_md), SECTION_START, SECTION_END, results_md)


def speed_lines(rows: Sequence[dict[str, str]], engine_rows: Sequence[dict[str, str]] = ()) -> list[str]:
    """Per CPU class: the default's training minutes for cl2023's 154 images (the latest full-schedule
    ``train+valid`` run of ``cascade_hrnet-s_cpu`` on that class; minutes = 154 x 40 epochs / its training img/s,
    training iterations only), its peak RSS, step 5 as ``benchmarks.run`` timed it (engine ``auto``), and step 5 per
    engine from the engine section (the latest row of each engine, 20 ISBI images, untrained weights)."""
    lines = [SPEED_HEADING, '',
             'Generated by `python -m benchmarks.summary` from the Runs rows and the step 5 engine section above. '
             f'Training: the latest `cascade_hrnet-s_cpu` cl2023 `{TRAIN_VALID}` run of each class, '
             f'{CL2023_TRAIN_IMAGES} images x {DEFAULT_EPOCHS} epochs / its training img/s (iterations only; its '
             'notes say what ran beside it); step 5: seconds per image, model load excluded; "--" = not measured on '
             'such a CPU. Targets (issue 40, 2 cores): training <= 30 min on AVX2 only, <= 10 min with bfloat16; '
             'step 5 <= 0.25 s per image on AVX2 only, <= 0.10 s with bfloat16; peak RSS < 1 GiB.', '']
    header = ('CPU class', 'Training min (img/s)', 'Train peak RSS GiB', 'Training run', 'Step 5 s/image (run, auto)',
              'Step 5 s/image pytorch / onnxruntime / onnxruntime-int8', 'Step 5 peak RSS MiB (same order)',
              'Step 5 CPU')
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for cls in CPU_CLASSES:
        training = [r for r in rows if cpu_class(r['Hardware']) == cls and r['Protocol'] == 'cl2023'
                    and normalised(r) == ('cascade_hrnet-s_cpu', TRAIN_VALID)]
        run = training[-1] if training else None
        engines = {}
        for row in engine_rows:
            if cpu_class(row['CPU']) == cls and row['Images'] == '20':
                engines[row['Engine'].split(' ')[0]] = row
        speeds = ' / '.join(engines[e]['s/image'] if e in engines else '--'
                            for e in ('pytorch', 'onnxruntime', 'onnxruntime-int8'))
        memory = ' / '.join(engines[e]['Peak RSS MiB'] if e in engines else '--'
                            for e in ('pytorch', 'onnxruntime', 'onnxruntime-int8'))
        img_s = _number(run['Train img/s']) if run else None
        cells = [cls,
                 f'{CL2023_TRAIN_IMAGES * DEFAULT_EPOCHS / img_s / 60:.1f} ({run["Train img/s"]})' if img_s else '--',
                 run['Train peak RSS GiB'] if run else '--',
                 f'{run["Hardware"]}, {run["Split"]}, {run["Budget"]}, {run["Date"]} {run["Commit"]}' if run else '--',
                 f'{_number(run["Infer ms/img"]) / 1000:.3f}' if run else '--', speeds, memory,
                 next(iter(engines.values()))['CPU'].split(';')[0] if engines else '--']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


# ------------------------------------------------------------------------------------------- seed means
SEED_MEANS_HEADING = '### Seed means'
COMPARISONS_HEADING = '### What each technique bought'
FOLD_MEANS_HEADING = '### Fold means and ratios against seed-baseline'
XEON_BF16 = 'Intel(R) Xeon(R) Processor (AVX512, bf16), 2 cores'
EPYC = 'AMD EPYC, 2 cores'
EPYC_BF16 = 'AMD EPYC (AVX512, bf16), 2 cores'
TRAIN_VALID = 'config, train+valid'


@dataclass(frozen=True)
class Recipe:
    """A named set of Runs rows: one model recipe, run with several seeds or on several protocols / folds."""
    name: str
    config: str  # the Config cell without '(seed N)'
    budgets: tuple[str, ...]  # Budget cells without 'seed N' and notes in parentheses
    hardware: str = ''  # the Hardware cell exactly; '' = any
    commits: tuple[str, ...] = ()  # prefixes of the Commit cell; () = any

    def matches(self, row: dict[str, str]) -> bool:
        config, budget = normalised(row)
        return (config == self.config and budget in self.budgets
                and (not self.hardware or row['Hardware'] == self.hardware)
                and (not self.commits or row['Commit'].startswith(self.commits)))


def normalised(row: dict[str, str]) -> tuple[str, str]:
    """``(config, budget)`` of a row without its seed and without notes in parentheses."""
    config = re.sub(r'\s*\(seed \d+\)', '', row['Config']).strip()
    budget = re.sub(r'\s*\([^)]*\)', '', row['Budget'])
    budget = ', '.join(p.strip() for p in budget.split(',') if not re.fullmatch(r'seed \d+', p.strip()))
    return config, budget


#: the recipes prose quotes; a recipe's rows are listed in RESULTS.md's seed-mean table.
RECIPES: tuple[Recipe, ...] = (
    Recipe('default', 'cascade_adamw-wd2', (TRAIN_VALID, 'config'), XEON_BF16),
    Recipe('default, AMD EPYC with bf16', 'cascade_hrnet-s_cpu', ('config', TRAIN_VALID), EPYC_BF16),
    Recipe('default on a subset of the images', 'cascade_hrnet-s_cpu',
           tuple(f'{TRAIN_VALID}, {n} img' for n in ('39/154', '77/154', '37/150', '75/150'))),
    Recipe('default on an AVX2-only CPU', 'cascade_hrnet-s_cpu', ('config',), 'AMD EPYC (AVX2), 2 cores'),
    Recipe('Adam (the default until 2026-12-06)', 'cascade_hrnet-s_cpu', (TRAIN_VALID,), XEON_BF16),
    Recipe('AdamW decay 0.5', 'cascade_adamw', (TRAIN_VALID,), XEON_BF16),
    Recipe('AdamW decay 1.0', 'cascade_adamw-wd1', (TRAIN_VALID,), XEON_BF16),
    Recipe('AdamW decay 3.0', 'cascade_adamw-wd3', (TRAIN_VALID,), XEON_BF16),
    Recipe('AdamW decay 4.0', 'cascade_adamw-wd4', (TRAIN_VALID,), XEON_BF16),
    Recipe('60 epochs', 'cascade_60ep', (TRAIN_VALID,), XEON_BF16),
    Recipe('batches of 4', 'cascade_batch4', (TRAIN_VALID,), XEON_BF16),
    Recipe('local heatmap sigma 1.5', 'cascade_local-sigma1.5', (TRAIN_VALID,), XEON_BF16),
    Recipe('deeper local network', 'cascade_local-deep', (TRAIN_VALID,), XEON_BF16),
    Recipe('160 x 160 local patches', 'cascade_local-p160', (TRAIN_VALID,), XEON_BF16),
    Recipe('deeper global network', 'cascade_global-deep', (TRAIN_VALID,), XEON_BF16),
    Recipe('global network 48-384 wide', 'cascade_global-w48', (TRAIN_VALID,), XEON_BF16),
    Recipe('local Adaptive Wing loss', 'cascade_local-awing', (TRAIN_VALID,), XEON_BF16),
    Recipe('local stage 32-256 wide, 16 patches', 'cascade_local-w32-p16', (TRAIN_VALID,), XEON_BF16),
    Recipe('local stage on the global estimates (removed)', 'cascade_local-global-start', (TRAIN_VALID,), XEON_BF16),
    Recipe('a 0.15 mm/px stage behind the local one (removed)', 'cascade_local-then-0.15mm', (TRAIN_VALID,),
           XEON_BF16),
    Recipe('Adam with global stage 32-256 (the default of 2026-11-30)', 'cascade_global-w32', ('config',), EPYC),
    Recipe('local stage 24-192 wide', 'cascade_local-w24', ('config',), EPYC),
    Recipe('trained on train + valid (2026-12-01)', 'cascade_hrnet-s_cpu', (TRAIN_VALID,), EPYC),
    Recipe('self-training, + 107 pseudo-labelled images (2026-12-01)', 'cascade_hrnet-s_cpu',
           ('config, +107 pseudo',), EPYC, ('b6a1b3e0', '1e3f7eb7')),
    Recipe('a middle patch stage at 0.4 mm/px (removed)', 'cascade_middle-0.4mm', ('config',), EPYC),
    Recipe('bfloat16 training', 'cascade_bf16', ('config',), EPYC),
    Recipe('float32 training', 'cascade_fp32', ('config',), EPYC),
)


@dataclass(frozen=True)
class Comparison:
    """What a change bought: ``change`` against ``reference`` (names of ``RECIPES``)."""
    what: str
    change: str
    reference: str


COMPARISONS: tuple[Comparison, ...] = (
    Comparison('AdamW with decoupled weight decay 2.0 instead of Adam', 'default',
               'Adam (the default until 2026-12-06)'),
    Comparison('AdamW decay 0.5 instead of Adam', 'AdamW decay 0.5', 'Adam (the default until 2026-12-06)'),
    Comparison('AdamW decay 1.0 instead of Adam', 'AdamW decay 1.0', 'Adam (the default until 2026-12-06)'),
    Comparison('AdamW decay 3.0 instead of 2.0', 'AdamW decay 3.0', 'default'),
    Comparison('AdamW decay 4.0 instead of 2.0', 'AdamW decay 4.0', 'default'),
    Comparison('60 epochs instead of 40', '60 epochs', 'default'),
    Comparison('batches of 4 with decay 1.0', 'batches of 4', 'default'),
    Comparison('local heatmap sigma 1.5 instead of 2', 'local heatmap sigma 1.5', 'default'),
    Comparison('a deeper local network', 'deeper local network', 'default'),
    Comparison('160 x 160 local patches', '160 x 160 local patches', 'default'),
    Comparison('a deeper global network', 'deeper global network', 'default'),
    Comparison('a wider global network (48-384)', 'global network 48-384 wide', 'default'),
    Comparison('the Adaptive Wing loss in the local stage', 'local Adaptive Wing loss',
               'Adam (the default until 2026-12-06)'),
    Comparison('a wider local stage with 16 patches per image', 'local stage 32-256 wide, 16 patches',
               'Adam (the default until 2026-12-06)'),
    Comparison('local stage 1.5x as wide (24/48/96/192)', 'local stage 24-192 wide',
               'Adam with global stage 32-256 (the default of 2026-11-30)'),
    Comparison('training on train + valid, last checkpoint', 'trained on train + valid (2026-12-01)',
               'Adam with global stage 32-256 (the default of 2026-11-30)'),
    Comparison('self-training on 107 pseudo-labelled radiographs', 'self-training, + 107 pseudo-labelled images '
               '(2026-12-01)', 'Adam with global stage 32-256 (the default of 2026-11-30)'),
    Comparison('bfloat16 instead of float32 training', 'bfloat16 training', 'float32 training'),
    Comparison('local stage trained on the global estimates (removed)',
               'local stage on the global estimates (removed)', 'Adam (the default until 2026-12-06)'),
    Comparison('a 0.15 mm/px stage behind the local one (removed)',
               'a 0.15 mm/px stage behind the local one (removed)', 'Adam (the default until 2026-12-06)'),
    Comparison('a middle patch stage at 0.4 mm/px (removed)', 'a middle patch stage at 0.4 mm/px (removed)',
               'Adam with global stage 32-256 (the default of 2026-11-30)'),
)

_ACCURACY = ('MRE', 'SD', 'SDR 2mm', 'SDR 2.5mm', 'SDR 3mm', 'SDR 4mm')


@dataclass
class SeedMean:
    """The distinct runs of one recipe on one protocol / split / ground truth / budget."""
    recipe: str
    protocol: str
    split: str
    ground_truth: str
    budget: str
    hardware: str
    runs: list[dict[str, str]]

    @property
    def key(self) -> tuple[str, str, str]:
        return self.protocol, self.split, self.ground_truth

    def each(self, figure: str) -> list[float]:
        return [float(r[figure]) for r in self.runs]

    def mean(self, figure: str, digits: int) -> float:
        """The mean, rounded as the table shows it."""
        return round(statistics.fmean(self.each(figure)), digits)


def seed_means(rows: Sequence[dict[str, str]], recipe: Recipe) -> list[SeedMean]:
    """The runs of ``recipe`` per protocol / split / ground truth / budget (rows with equal accuracy: once)."""
    found: dict[tuple, SeedMean] = {}
    for row in rows:
        if not recipe.matches(row) or _number(row.get('MRE', '')) is None:
            continue
        budget = normalised(row)[1]
        key = (row['Protocol'], row['Split'], row['Ground truth'], budget)
        mean = found.setdefault(key, SeedMean(recipe.name, *key, row['Hardware'], []))
        if all(any(r[f] != row[f] for f in _ACCURACY) for r in mean.runs):
            mean.runs.append(row)
    return [found[key] for key in sorted(found)]


def _each(values: list[float], digits: int) -> str:
    return ' / '.join(f'{v:.{digits}f}' for v in values)


def seed_mean_lines(rows: Sequence[dict[str, str]]) -> list[str]:
    """Markdown of the seed-mean table of every recipe in ``RECIPES`` with rows."""
    lines = [SEED_MEANS_HEADING, '',
             'Generated by `python -m benchmarks.summary` from the Runs rows of each recipe of `RECIPES` in '
             '`benchmarks/summary.py` (a config, its budgets, its hardware and sometimes commits). Runs: the '
             'distinct runs (seeds; a row that repeats another\'s accuracy figures is one deterministic run '
             'recorded twice and counts once), in the order they ran. MRE in mm, SDR 2 mm in %.', '']
    header = ('Recipe', 'Config', 'Budget', 'Protocol', 'Split', 'Ground truth', 'Runs', 'MRE of each run',
              'MRE mean', 'SDR 2mm of each run', 'SDR 2mm mean', 'Hardware')
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for recipe in RECIPES:
        for m in seed_means(rows, recipe):
            lines.append('| ' + ' | '.join((
                recipe.name, f'`{recipe.config}`', m.budget, m.protocol, m.split, m.ground_truth, str(len(m.runs)),
                _each(m.each('MRE'), 3), f'{m.mean("MRE", 3):.3f}', _each(m.each('SDR 2mm'), 2),
                f'{m.mean("SDR 2mm", 2):.2f}', m.hardware)) + ' |')
    return lines


def comparison_lines(rows: Sequence[dict[str, str]]) -> list[str]:
    """Markdown of the table of ``COMPARISONS``: the change's and the reference's seed means and the difference."""
    recipes = {r.name: r for r in RECIPES}
    lines = [COMPARISONS_HEADING, '',
             'Generated by `python -m benchmarks.summary` from `COMPARISONS` in `benchmarks/summary.py`: a recipe '
             'of the seed-mean table against the recipe it changed, on every protocol / split / ground truth '
             'both ran; the difference is change − reference of the rounded means (negative MRE: better). '
             'Runs: of the change / of the reference.', '']
    header = ('Change', 'Against', 'Protocol', 'Split', 'Ground truth', 'Runs', 'MRE: reference → change',
              'Δ MRE', 'Δ SDR 2mm')
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for c in COMPARISONS:
        references = {m.key: m for m in seed_means(rows, recipes[c.reference])}
        for m in seed_means(rows, recipes[c.change]):
            ref = references.get(m.key)
            if ref is None:
                continue
            mre, ref_mre = m.mean('MRE', 3), ref.mean('MRE', 3)
            sdr, ref_sdr = m.mean('SDR 2mm', 2), ref.mean('SDR 2mm', 2)
            lines.append('| ' + ' | '.join((
                c.what, c.reference, m.protocol, m.split, m.ground_truth, f'{len(m.runs)} / {len(ref.runs)}',
                f'{ref_mre:.3f} → {mre:.3f}', f'{mre - ref_mre:+.3f}', f'{sdr - ref_sdr:+.2f}')) + ' |')
    return lines


def measured_disagreement(shared_data: Path) -> Optional[dict[str, float]]:
    """Junior-vs-senior MRE / SDR on Test1, or None when the real data is absent."""
    csv_path = shared_data / 'isbi2015' / 'landmarks.csv'
    if not csv_path.is_file():
        return None
    return annotator_disagreement(read_isbi_annotations(csv_path), ISBI_TEST1_IMAGES)


def _reference_lines(disagreement: Optional[dict[str, float]]) -> list[tuple[str, str, float, float]]:
    """``(protocol, label, MRE, SDR 2 mm)`` of every reference line."""
    lines = [(r.protocol, r.label, r.mre, r.sdr2) for r in REFERENCES]
    if disagreement:
        lines.append(('isbi2015', 'junior vs senior annotator, Test1 (measured)', disagreement['MRE'],
                      disagreement['SDR 2.0mm']))
    return lines


def draw_plot(groups: Sequence[Group], path: Path, disagreement: Optional[dict[str, float]] = None) -> Path:
    """Bars of MRE and SDR 2 mm per (protocol, ground truth) and config / budget; references as lines."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    categories = sorted({(g.protocol, g.ground_truth) for g in groups})
    series = sorted({(g.config, g.budget, g.hardware) for g in groups})
    references = _reference_lines(disagreement)
    width = 0.8 / max(len(series), 1)
    fig, axes = plt.subplots(1, 2, figsize=(5 + 2.5 * len(categories), 6))
    bar_colours, line_colours = plt.get_cmap('tab10'), plt.get_cmap('Dark2')
    for ax, figure, unit in ((axes[0], 'MRE', 'mm, lower is better'), (axes[1], 'SDR 2mm', '%, higher is better')):
        values = []
        for s, (config, budget, hardware) in enumerate(series):
            xs, ys, errs = [], [], []
            for c, (protocol, ground_truth) in enumerate(categories):
                g = next((g for g in groups if (g.protocol, g.ground_truth, g.config, g.budget, g.hardware)
                          == (protocol, ground_truth, config, budget, hardware)), None)
                if g is not None:
                    xs.append(c - 0.4 + width * (s + 0.5))
                    ys.append(g.mean[figure])
                    errs.append(g.sd[figure] if g.sd[figure] is not None else float('nan'))  # no whisker: one split
            values += ys
            ax.bar(xs, ys, width * 0.9, yerr=errs, capsize=3, color=bar_colours(s % 10),
                   label=f'{config} ({budget} budget; {hardware})')
        for i, (protocol, label, mre, sdr2) in enumerate(references):
            value = mre if figure == 'MRE' else sdr2
            values.append(value)
            for c, (cat_protocol, _) in enumerate(categories):
                if cat_protocol == protocol:
                    ax.hlines(value, c - 0.45, c + 0.45, colors=[line_colours(i % 8)], lw=1.5,
                              linestyles=('--', ':', '-.')[i % 3], label=f'{protocol}: {label}' if c ==
                              next(k for k, cat in enumerate(categories) if cat[0] == protocol) else None)
        if figure == 'MRE' and values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale('log')  # an under-trained model and the published figures on one axis
        ax.set_xticks(range(len(categories)), [f'{p}\n({gt} ground truth)' for p, gt in categories])
        ax.set_ylabel(f'{figure} ({unit})')
        ax.set_title(figure)
        ax.grid(axis='y', alpha=0.3, which='both')
    axes[1].set_ylim(0, 100)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=2, fontsize=7, frameon=False)
    fig.suptitle('cldetection benchmarks: bars = mean over folds (whiskers: SD over folds), lines = references',
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.03 + 0.028 * ((len(series) + len(references) + 1) // 2), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def summarize(results_md: Path = DEFAULT_RESULTS, plot: Optional[Path] = DEFAULT_PLOT,
              shared_data: Path = DEFAULT_SHARED_DATA) -> list[Group]:
    """Rewrite the summary of ``results_md`` and draw ``plot``; return the groups."""
    rows = read_rows(results_md)
    if not rows:
        fail(results_md, 'no Runs table with rows: run `python -m benchmarks.run` first')
    groups = group_rows(rows)
    disagreement = measured_disagreement(shared_data)
    replace_summary(results_md, summary_lines(groups, disagreement, rows, read_engine_rows(results_md)))
    if plot is not None:
        draw_plot(groups, plot, disagreement)
    return groups


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Average benchmark folds, write the summary into RESULTS.md '
                                                 'and draw results.png.')
    parser.add_argument('--results', type=Path, default=DEFAULT_RESULTS, help='default: %(default)s')
    parser.add_argument('--plot', type=Path, default=DEFAULT_PLOT, help='default: %(default)s')
    parser.add_argument('--no-plot', action='store_true', help='only rewrite the summary')
    parser.add_argument('--shared-data', type=Path, default=DEFAULT_SHARED_DATA,
                        help='real data (for the measured annotator disagreement; default: %(default)s)')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    groups = summarize(args.results, None if args.no_plot else args.plot, args.shared_data)
    print(f'{args.results}: summary of {len(groups)} group(s)' + ('' if args.no_plot else f'; plot {args.plot}'))
    return 0


if __name__ == '__main__':
    run_cli(main)
