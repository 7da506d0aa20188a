"""Benchmark runner: one config, one protocol, one budget -> ``result.json``, ``best.pth`` and RESULTS.md rows.

    python -m benchmarks.run --protocol cl2023|isbi2015 --config CFG --budget cpu|config --work-dir DIR [--fold i]

What it does, each step as a user would run it:

1. builds (or reuses) the protocol's data with the stack builder and step 2 (:mod:`benchmarks.data`);
2. derives ``DIR/config.py`` from ``CFG``: the protocol's data folders and landmark count, no ImageNet
   initialisation (offline, and equal for every config; ``--pretrained`` keeps the config's), the budget's
   schedule (:data:`CPU_BUDGET`), and a hook measuring training throughput;
3. trains with step 3 (``step3_train_and_evaluation.py DIR/config.py --work-dir DIR/train``), keeps the
   best-on-valid checkpoint as ``DIR/best.pth`` (with ``--train-on-valid``: trains on train + valid, keeps the
   last checkpoint as ``DIR/last.pth``);
4. tests it with step 4 on the protocol's test images (``DIR/test_<ground truth>/metrics.json`` + CSVs);
5. times inference on the step 5 path (``cldetection.predict.LandmarkPredictor`` on the test stack, CPU,
   model load and a warm-up slice excluded) and checks its MRE on those slices against step 4's;
6. writes ``DIR/result.json`` (validated, see :mod:`benchmarks.results`) and appends to ``benchmarks/RESULTS.md``.

Budgets: ``config`` is the config's own schedule; ``cpu`` is the reduced schedule of :data:`CPU_BUDGET`, the
same for every config so that figures compare.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from cldetection.challenge_io import load_landmarks, write_json_atomic
from cldetection.errors import fail, run_cli

from .data import (DEFAULT_DATA_DIR, DEFAULT_SHARED_DATA, ISBI_GROUND_TRUTHS, PROTOCOLS, ProtocolData, image_ids,
                   merge_training_annotations, prepare_protocol, subset_training_annotations)
from .hooks import THROUGHPUT_FILE
from .process import REPO_ROOT, Measured, python_command, run_measured
from .results import BUDGETS, SCHEMA, append_rows, result_rows, validate_result

logger = logging.getLogger(__name__)
DEFAULT_RESULTS = REPO_ROOT / 'benchmarks' / 'RESULTS.md'


@dataclass(frozen=True)
class Budget:
    """A reduced training schedule applied identically to every config.

    ``max_epochs``: training epochs; every scheduler's begin / end / milestones (epoch- and iteration-based
    alike) are scaled by ``max_epochs / config epochs``, so warm-up and LR steps keep their place in the
    schedule. ``input_size``: network input (width, height); the heatmap keeps the config's stride.
    ``val_interval``: validate (and keep the best checkpoint) every this many epochs. ``num_workers``: data
    loader processes of every split (the model's threads already use both cores).
    """
    max_epochs: int
    input_size: tuple[int, int]
    val_interval: int
    num_workers: int


#: ``cpu``: one protocol run within 30 minutes on 2 (unshared) cores for the largest config, seed-baseline's
#: HRNet-W48: its training step measured 0.82 s per 256 x 256 image (HRNet-W32: 0.5 s), so 10 epochs of
#: ~135 images take ~20 min, validation, two step 4 tests and the step 5 timing ~5 min more.
CPU_BUDGET = Budget(max_epochs=10, input_size=(256, 256), val_interval=2, num_workers=1)
INFER_DEVICE = 'cpu'


# ---------------------------------------------------------------------------------------- the config
def _scale_schedule(cfg: Any, factor: float, epoch_based_only: bool = False) -> list[dict]:
    """Scale every LR / momentum scheduler's positions by ``factor`` (in place; with ``epoch_based_only`` only
    those counted in epochs, so an iteration-based warm-up keeps its iterations); return the new schedulers."""
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for scheduler in schedulers:
        if epoch_based_only and not scheduler.get('by_epoch', True):
            continue
        for key in ('begin', 'end', 'T_max'):
            if isinstance(scheduler.get(key), (int, float)) and scheduler[key] < 10 ** 8:  # skip "infinity"
                scheduler[key] = max(int(round(scheduler[key] * factor)), 1 if key != 'begin' else 0)
        if 'milestones' in scheduler:
            scheduler['milestones'] = [max(int(round(m * factor)), 1) for m in scheduler['milestones']]
    cfg.param_scheduler = schedulers
    return [dict(s) for s in schedulers]


def _replace_sizes(node: Any, old: tuple[int, int], new: tuple[int, int], key: str) -> int:
    """Replace every ``key`` equal to ``old`` by ``new`` in a nested config; return how many."""
    count = 0
    if isinstance(node, dict):
        for k, value in node.items():
            if k == key and isinstance(value, (list, tuple)) and tuple(value) == old:
                node[k] = new
                count += 1
            else:
                count += _replace_sizes(value, old, new, key)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace_sizes(value, old, new, key)
    return count


def set_epochs(cfg: Any, max_epochs: int, val_interval: int, epoch_based_only: bool = False) -> list[dict]:
    """Train ``max_epochs`` epochs, validating (and checkpointing) every ``val_interval``; scale the schedule
    (with ``epoch_based_only``, only its epoch-based schedulers: see :func:`_scale_schedule`)."""
    factor = max_epochs / int(cfg.train_cfg.max_epochs)
    cfg.train_cfg.max_epochs = max_epochs
    cfg.train_cfg.val_interval = val_interval
    cfg.default_hooks.checkpoint.interval = val_interval
    return _scale_schedule(cfg, factor, epoch_based_only)


def scale_epochs_for_fewer_images(cfg: Any, factor: float) -> dict[str, Any]:
    """Train ``factor`` times the epochs (in place), for a run on ``1 / factor`` of the training images: the same
    number of iterations (optimiser steps) and of patches, so that a learning curve measures images and not
    training length. Epoch-based schedulers and the validation / checkpoint interval scale with the epochs;
    iteration-based ones (the warm-up) keep their iterations. Returns what changed (for ``result.json``)."""
    old_epochs = int(cfg.train_cfg.max_epochs)
    new_epochs = max(int(round(old_epochs * factor)), 1)
    interval = max(int(round(int(cfg.train_cfg.get('val_interval', 1)) * new_epochs / old_epochs)), 1)
    schedulers = set_epochs(cfg, new_epochs, interval, epoch_based_only=True)
    return {'max_epochs': new_epochs, 'from_epochs': old_epochs, 'val_interval': interval,
            'param_scheduler': schedulers}


def apply_budget(cfg: Any, budget: Optional[Budget], config_path: Path) -> dict[str, Any]:
    """Apply ``budget`` to ``cfg`` in place; return what changed (for ``result.json``). ``None``: full schedule."""
    if 'codec' not in cfg:
        fail(config_path, 'no top-level "codec" (input_size / heatmap_size): not a heatmap config the '
                          'benchmark knows how to resize')
    old_epochs, old_input = int(cfg.train_cfg.max_epochs), tuple(cfg.codec.input_size)
    if budget is None:
        return {'schedule': 'config', 'max_epochs': old_epochs, 'input_size': list(old_input)}
    schedulers = set_epochs(cfg, budget.max_epochs, budget.val_interval)
    old_heatmap = tuple(cfg.codec.heatmap_size)
    stride = (old_input[0] // old_heatmap[0], old_input[1] // old_heatmap[1])
    new_input = tuple(budget.input_size)
    new_heatmap = (new_input[0] // stride[0], new_input[1] // stride[1])
    if new_input != old_input:
        _replace_sizes(cfg._cfg_dict, old_input, new_input, 'input_size')
        _replace_sizes(cfg._cfg_dict, old_heatmap, new_heatmap, 'heatmap_size')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].num_workers = budget.num_workers
        cfg[key].persistent_workers = False
    return {'schedule': 'cpu', 'max_epochs': budget.max_epochs, 'config_max_epochs': old_epochs,
            'schedule_scale': budget.max_epochs / old_epochs,
            'val_interval': budget.val_interval, 'input_size': list(new_input), 'heatmap_size': list(new_heatmap),
            'config_input_size': list(old_input), 'num_workers': budget.num_workers,
            'param_scheduler': schedulers}


def derive_config(config_path: Path, data: ProtocolData, budget: Optional[Budget], out_path: Path,
                  pretrained: bool, max_epochs: Optional[int] = None,
                  train_ann_file: Optional[Path] = None, epoch_scale: float = 1.0) -> tuple[Any, dict[str, Any]]:
    """Write the benchmark's config (``out_path``) and return it with the budget's overrides.

    ``max_epochs`` shortens the budgeted schedule further (smoke tests; recorded as ``shortened_to_epochs``).
    ``train_ann_file``: train on this COCO JSON (absolute path; its images in the train folder's ``images/``)
    instead of the protocol's ``train.json`` (recorded as ``train_ann_file``). ``epoch_scale``: train that many
    times the budget's epochs (``--train-images``: the same iterations on fewer images; recorded as
    ``epochs_for_fewer_images``).
    """
    from cldetection.config_utils import iter_dataset_cfgs, load_config, set_num_landmarks, set_pretrained

    cfg = load_config(config_path)
    set_num_landmarks(cfg, data.num_landmarks)
    if not pretrained:
        set_pretrained(cfg, None)
    primary_test = next(iter(data.test_roots.values()))
    roots = {'train_dataloader': (data.train_root, 'train.json'), 'val_dataloader': (data.valid_root, 'valid.json'),
             'test_dataloader': (primary_test, 'test.json')}
    for key, (root, ann_file) in roots.items():
        datasets = [d for d in iter_dataset_cfgs(cfg, (key,)) if 'ann_file' in d]
        if len(datasets) != 1:
            fail(config_path, f'{key} has {len(datasets)} annotated datasets; the benchmark needs exactly one')
        datasets[0].update(data_root=str(root), ann_file=ann_file, data_prefix=dict(img='images/'))
        if key == 'train_dataloader' and train_ann_file is not None:
            datasets[0].ann_file = str(train_ann_file.resolve())  # absolute: MMEngine joins only relative ones
    cfg.data_root = str(data.train_root)
    overrides = apply_budget(cfg, budget, config_path)
    if epoch_scale != 1.0:
        overrides['epochs_for_fewer_images'] = scale_epochs_for_fewer_images(cfg, epoch_scale)
    if train_ann_file is not None:
        overrides['train_ann_file'] = str(train_ann_file.resolve())
    if max_epochs is not None:
        overrides['param_scheduler'] = set_epochs(cfg, max_epochs, min(int(cfg.train_cfg.get('val_interval', 1)),
                                                                       max_epochs))
        overrides['shortened_to_epochs'] = max_epochs
    # disk, not results: keep the best checkpoint and only the latest epoch one (~0.8 GB each for HRNet-W48)
    cfg.default_hooks.checkpoint.max_keep_ckpts = 1
    overrides['max_keep_ckpts'] = 1
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    cfg.custom_imports = dict(imports=imports + ['benchmarks.hooks'], allow_failed_imports=False)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='TrainThroughputHook')]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(out_path))
    return cfg, overrides


# ---------------------------------------------------------------------------------------- measures
def hardware() -> dict[str, Any]:
    """CPU model, usable cores, memory and GPU of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30
    except (ValueError, OSError):
        memory = float('nan')
    import torch

    from cldetection.precision import cpu_has_bf16_hardware
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    # The same CPU name covers machines 2-4x apart in speed (an AMD EPYC with AVX-512 and bfloat16 hardware
    # trains the default in 15 min, one with AVX2 only in 62): the vector unit and bfloat16 say which one ran.
    return {'cpu': cpu, 'cores': len(os.sched_getaffinity(0)), 'memory_gib': round(memory, 1), 'gpu': gpu,
            'cpu_capability': torch.backends.cpu.get_cpu_capability(), 'cpu_bf16': cpu_has_bf16_hardware(),
            'torch': torch.__version__, 'python': platform.python_version()}


# What the harness itself writes into the checkout: a run that appends to RESULTS.md must not call the next
# run's code "dirty" (it did, and every run after the first one was recorded as ``+dirty``).
HARNESS_OUTPUTS = ('benchmarks/RESULTS.md', 'benchmarks/results.png')


def git_commit(repo: Path = REPO_ROOT) -> str:
    """HEAD's hash, ``+dirty`` when tracked files other than :data:`HARNESS_OUTPUTS` differ from it;
    ``unknown`` outside a checkout."""
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--', '.',
                                *(f':(exclude){path}' for path in HARNESS_OUTPUTS)],
                               cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return head + ('+dirty' if dirty else '')


def read_per_landmark(csv_path: Path) -> list[dict[str, Any]]:
    """Step 4's ``per_landmark.csv`` as ``[{landmark, name, count, MRE, MRE_SD, SDR 2.0mm}]``."""
    with open(csv_path, newline='', encoding='utf-8') as f:
        return [{'landmark': int(r['landmark']), 'name': r['name'], 'count': int(r['count']),
                 'MRE': float(r['MRE']), 'MRE_SD': float(r['MRE_SD']), 'SDR 2.0mm': float(r['SDR 2.0mm'])}
                for r in csv.DictReader(f)]


def _per_image_errors(csv_path: Path) -> dict[int, list[float]]:
    """Step 4's ``per_image.csv``: image id -> the radial errors (mm) of its scored landmarks."""
    with open(csv_path, newline='', encoding='utf-8') as f:
        return {int(r['img_id']): [float(v) for k, v in r.items() if k.startswith('error_') and v != '']
                for r in csv.DictReader(f)}


def time_inference(config: Path, checkpoint: Path, data: ProtocolData, ground_truth: Path,
                   step4_per_image: Path, num_images: int) -> dict[str, Any]:
    """ms per image on the step 5 path (model load and a warm-up slice excluded), and its MRE vs step 4's."""
    from cldetection.predict import LandmarkPredictor, evaluate_points

    predictor = LandmarkPredictor(config, checkpoint, device=INFER_DEVICE)
    warm_up, timed = data.test_slices[0], data.test_slices[1:num_images + 1]
    predictor.predict_stack(data.test_stack, slices=[warm_up], progress=False)
    prediction = predictor.predict_stack(data.test_stack, slices=timed, progress=False)
    metrics = evaluate_points(prediction.points, load_landmarks(ground_truth).subset(timed))
    step4_errors = _per_image_errors(step4_per_image)
    step4_mre = float(np.mean([e for z in timed for e in step4_errors[z]]))
    if abs(metrics['MRE'] - step4_mre) > 0.01 * max(step4_mre, 1e-9) + 1e-6:
        logger.warning('step 5 path MRE %.4f differs from step 4 MRE %.4f on the same %d images',
                       metrics['MRE'], step4_mre, len(timed))
    return {'ms_per_image': 1000.0 * prediction.seconds_per_slice, 'images': len(timed), 'device': INFER_DEVICE,
            'batch_size': predictor.batch_size, 'model_load_s': round(predictor.load_seconds, 3),
            'stack': str(data.test_stack), 'slices': list(timed),
            'step5_mre_on_timed_images': metrics['MRE'], 'step4_mre_on_timed_images': step4_mre}


def _read_throughput(train_dir: Path) -> dict[str, Any]:
    path = train_dir / THROUGHPUT_FILE
    if not path.is_file():
        fail(path, 'not written: the training throughput hook did not run (see the step 3 log)')
    return json.loads(path.read_text())


def _keep_checkpoint(train_dir: Path, work_dir: Path, last: bool = False) -> tuple[Path, Path]:
    """Link the best-on-valid checkpoint (or, with ``last``, the final one) into ``work_dir`` as ``best.pth``
    (``last.pth``); return ``(source, kept)``."""
    from cldetection.train import best_checkpoint, latest_checkpoint

    source = latest_checkpoint(train_dir) if last else best_checkpoint(train_dir)
    if source is None:
        fail(train_dir, 'no last_checkpoint file naming a saved checkpoint: training did not finish' if last else
             'no best_*.pth checkpoint: validation never ran (check val_interval vs max_epochs)')
    target = work_dir / ('last.pth' if last else 'best.pth')
    if target.exists():
        target.unlink()  # ours: a previous --overwrite run's copy in this work dir
    try:
        os.link(source, target)  # same file system: no second copy of the weights
    except OSError:
        shutil.copy2(source, target)
    return source, target


# -------------------------------------------------------------------------------------------- the run
def read_extra_training_file(path: Path, test_roots: Sequence[Path] = ()) -> dict[str, Any]:
    """Check an ``--extra-train`` COCO JSON (e.g. :mod:`benchmarks.studies.pseudo_labels`' ``pseudo-train.json``) and
    describe it for ``result.json``: its images must be named by absolute paths (they live outside the protocol's
    image folder) and none may lie in a test folder of the protocol (``test_roots``). That the radiographs
    themselves are not test radiographs is the maker's guarantee (:mod:`benchmarks.studies.pseudo_labels` takes only
    images outside the cl2023 subset)."""
    if not path.is_file():
        fail(path, 'file not found')
    try:
        document = json.loads(path.read_text(encoding='utf-8'))
        images = document['images']
        names = [str(img['file_name']) for img in images]
        for img in images:
            int(img['id'])  # a numeric id on every image: merge_training_annotations compares them
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        fail(path, f'is not a COCO JSON with images (id, file_name): {err}')
    relative = [n for n in names if not Path(n).is_absolute()]
    if relative:
        fail(path, f'image {relative[0]!r} is not an absolute path; extra training images must be named by '
                   'absolute paths (as benchmarks.studies.pseudo_labels writes them)')
    roots = [Path(root).resolve() for root in test_roots]
    tested = [n for n in names if any(Path(n).resolve().is_relative_to(root) for root in roots)]
    if tested:
        fail(path, f'image {tested[0]} lies in a test folder of the protocol')
    info = document.get('info') or {}
    return {'file': str(path.resolve()), 'images': len(images), 'label': str(info.get('label', 'extra')),
            'description': str(info.get('description', ''))}


def merged_training_file(data: ProtocolData, work_dir: Path, train_on_valid: bool = False,
                         extra_train: Optional[Path] = None, extra_label: str = 'extra') -> Optional[Path]:
    """The training annotations of a run when they are more than step 2's ``train.json``: train, then valid
    (``train_on_valid``), then the extra file, merged once into ``work_dir/train+<...>.json``; ``None`` (train
    on ``train.json`` as it is) otherwise."""
    sources = [('train', data.train_root / 'train.json')]
    if train_on_valid:
        sources.append(('valid', data.valid_root / 'valid.json'))
    if extra_train is not None:
        sources.append((extra_label, extra_train))
    if len(sources) == 1:
        return None
    names = [name for name, _ in sources]
    return merge_training_annotations([path for _, path in sources], work_dir / f'{"+".join(names)}.json',
                                      ' + '.join(names))


def training_command(config: Path, train_dir: Path, seed: int, pretrained: bool,
                     train_on_valid: bool) -> list[str]:
    """Step 3's command line. With ``train_on_valid`` the valid images are training images, so validating on
    them would cost time and select nothing: step 3 runs with ``--no-validate`` (its last checkpoint is the
    model)."""
    command = python_command(str(REPO_ROOT / 'step3_train_and_evaluation.py'), str(config),
                             '--work-dir', str(train_dir), '--seed', str(seed))
    if not pretrained:
        command.append('--no-pretrained')
    if train_on_valid:
        command.append('--no-validate')
    return command


def run_benchmark(protocol: str, config: Path, budget_name: str, work_dir: Path, *, fold: Optional[int] = None,
                  data_dir: Path = DEFAULT_DATA_DIR, shared_data: Path = DEFAULT_SHARED_DATA,
                  results_md: Optional[Path] = DEFAULT_RESULTS, seed: int = 0, infer_images: int = 20,
                  pretrained: bool = False, max_epochs: Optional[int] = None, overwrite: bool = False,
                  echo: bool = False, ground_truth: str = ISBI_GROUND_TRUTHS[0],
                  train_on_valid: bool = False, extra_train: Optional[Path] = None,
                  train_images: Optional[int] = None, subset_seed: int = 0) -> dict[str, Any]:
    """Run one benchmark and return its validated result (see the module docstring).

    ``train_on_valid``: train on the train and valid images together (every image outside the test set, as a
    user with no images to spare would) and test the last checkpoint; step 3 runs without validation (the valid
    images are training images then, so validating on them would select nothing).
    ``extra_train``: a COCO JSON of more training images (absolute image paths, ids disjoint from the
    protocol's; e.g. :mod:`benchmarks.studies.pseudo_labels`), merged into the training file; selection and testing are
    unchanged.
    ``train_images``: train on that many of the training images (a nested random subset drawn with
    ``subset_seed``, :func:`benchmarks.data.subset_training_annotations`) for proportionally more epochs, so the
    run makes as many optimiser steps as one on every image: a point of a learning curve.
    """
    if budget_name not in BUDGETS:
        fail(None, f'--budget must be one of {", ".join(BUDGETS)}')
    if not config.is_file():
        fail(config, 'config file not found')
    if protocol == 'cl2023' and fold is None:
        fail(None, '--fold is required for cl2023 (0..4)')
    if work_dir.is_dir() and any(work_dir.iterdir()) and not overwrite:
        fail(work_dir, 'work dir is not empty; choose another or pass --overwrite (our files are replaced)')
    work_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc).astimezone()
    commit = git_commit()  # the code that trains: a long run must not record commits made while it ran

    data = prepare_protocol(protocol, data_dir, shared_data, fold or 0, echo, ground_truth)
    budget = CPU_BUDGET if budget_name == 'cpu' else None
    config_out = work_dir / 'config.py'
    extra = read_extra_training_file(extra_train, list(data.test_roots.values())) if extra_train else None
    train_ann_file = merged_training_file(data, work_dir, train_on_valid, extra_train,
                                          extra['label'] if extra else 'extra')
    subset = None
    if train_images is not None:
        full_file = train_ann_file or data.train_root / 'train.json'
        available = len(image_ids(full_file))
        train_ann_file = subset_training_annotations(
            full_file, work_dir / f'{full_file.stem}-{train_images}of{available}.json', train_images, subset_seed)
        subset = {'images': train_images, 'of': available, 'subset_seed': subset_seed}
    cfg, overrides = derive_config(config, data, budget, config_out, pretrained, max_epochs, train_ann_file,
                                   epoch_scale=subset['of'] / subset['images'] if subset else 1.0)
    if subset is not None:
        overrides['train_subset'] = subset
    if train_on_valid:
        overrides['train_on_valid'] = True
    if extra is not None:
        overrides['extra_train'] = extra

    train_dir = work_dir / 'train'
    command = training_command(config_out, train_dir, seed, pretrained, train_on_valid)
    training = run_measured(command, work_dir / 'step3.log', echo=echo)
    kept_source, kept = _keep_checkpoint(train_dir, work_dir, last=train_on_valid)
    throughput = _read_throughput(train_dir)

    evaluations: dict[str, Measured] = {}
    metrics: dict[str, dict] = {}
    per_landmark: dict[str, list] = {}
    for name, root in data.test_roots.items():
        out_dir = work_dir / f'test_{name}'
        command = python_command(str(REPO_ROOT / 'step4_test_and_visualize.py'), str(config_out),
                                 str(kept), '--split', 'test', '--out-dir', str(out_dir),
                                 '--cfg-options', f'test_dataloader.dataset.data_root={root}')
        evaluations[name] = run_measured(command, work_dir / f'step4_{name}.log', echo=echo)
        metrics[name] = json.loads((out_dir / 'metrics.json').read_text())
        per_landmark[name] = read_per_landmark(out_dir / 'per_landmark.csv')
    primary = next(iter(data.test_roots))
    gt_of_test_stack = (shared_data / 'cl2023_subset' / 'train-gt.json' if protocol == 'cl2023'
                        else data.test_stack.with_name(f'test-gt-{primary}.json'))
    inference = time_inference(config_out, kept, data, gt_of_test_stack,
                               work_dir / f'test_{primary}' / 'per_image.csv', infer_images)

    result = {
        'schema': SCHEMA, 'protocol': protocol, 'split': data.split,
        'fold': fold if protocol == 'cl2023' else None,
        'config': os.path.relpath(config.resolve(), REPO_ROOT) if config.resolve().is_relative_to(REPO_ROOT)
        else str(config),
        'derived_config': str(config_out), 'budget': budget_name, 'budget_overrides': overrides,
        'pretrained': pretrained, 'seed': seed,
        'date': started.isoformat(timespec='seconds'), 'git_commit': commit, 'hardware': hardware(),
        'data': {'num_landmarks': data.num_landmarks,
                 'train_images': len(image_ids(train_ann_file or data.train_root / 'train.json')),
                 'valid_images': len(image_ids(data.valid_root / 'valid.json')),
                 'test_images': len(data.test_slices),
                 'test_ground_truths': {k: str(v) for k, v in data.test_roots.items()}},
        'primary_ground_truth': primary, 'metrics': metrics, 'per_landmark_mre': per_landmark,
        'training': {**throughput, 'wall_s': round(training.wall_s, 1), 'peak_rss_bytes': training.peak_rss_bytes,
                     'batch_size': int(cfg.train_dataloader.batch_size),
                     ('last_checkpoint' if train_on_valid else 'best_checkpoint'): kept_source.name,
                     'log': str(training.log_path)},
        'evaluation': {name: m.as_dict() for name, m in evaluations.items()},
        'inference': inference, 'checkpoint': kept.name,
        'data_builds': data.builds,
    }
    validate_result(result)
    write_json_atomic(result, work_dir / 'result.json')
    if results_md is not None:
        append_rows(results_md, result_rows(result))
        logger.info('appended %s run to %s', protocol, results_md)
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train CONFIG on a real-data protocol under a budget (step 3), test it (step 4), time the '
                    'step 5 path, write DIR/result.json and DIR/best.pth, and append to benchmarks/RESULTS.md.')
    parser.add_argument('--protocol', choices=PROTOCOLS, required=True,
                        help='cl2023: 5-fold CV of the 193 CL-Detection 2023 images (38 landmarks); isbi2015: '
                             'train 001-150, test Test1 151-300 (19 landmarks, one ground truth: --ground-truth)')
    parser.add_argument('--config', type=Path, required=True, help='MMPose config, e.g. '
                        'cldetection_configs/hrnet-w32_udp_512x512.py')
    parser.add_argument('--budget', choices=BUDGETS, required=True,
                        help=f'cpu: {CPU_BUDGET.max_epochs} epochs at {CPU_BUDGET.input_size[0]}x'
                             f'{CPU_BUDGET.input_size[1]} input, schedule scaled (<= 30 min on 2 cores); '
                             'config: the config\'s own schedule (e.g. the cascade\'s 2-hour CPU schedule, or '
                             '250 epochs of HRNet-W32 on a GPU)')
    parser.add_argument('--work-dir', type=Path, required=True, help='where result.json, best.pth and logs go')
    parser.add_argument('--fold', type=int, help='cl2023 test fold, 0..4')
    parser.add_argument('--ground-truth', choices=ISBI_GROUND_TRUTHS, default=ISBI_GROUND_TRUTHS[0],
                        help='isbi2015: the ground truth trained, selected and tested on (default: %(default)s, the '
                             'official one; mean = of both annotators)')
    parser.add_argument('--data-dir', type=Path, default=DEFAULT_DATA_DIR, help='data cache (default: %(default)s)')
    parser.add_argument('--shared-data', type=Path, default=DEFAULT_SHARED_DATA,
                        help='real data folder (default: %(default)s)')
    parser.add_argument('--results', type=Path, help=f'RESULTS.md to append to (default: {DEFAULT_RESULTS}; '
                                                     'a --max-epochs run is only appended to an explicit --results)')
    parser.add_argument('--no-results', action='store_true', help='do not append to RESULTS.md')
    parser.add_argument('--seed', type=int, default=0, help='training seed (default: %(default)s)')
    parser.add_argument('--infer-images', type=int, default=20,
                        help='test images timed on the step 5 path (default: %(default)s)')
    parser.add_argument('--pretrained', action='store_true',
                        help='keep the config\'s ImageNet initialisation (needs a download); default: none')
    parser.add_argument('--max-epochs', type=int,
                        help='shorten training to N epochs (smoke test; recorded in result.json, and not '
                             'appended to the default RESULTS.md)')
    parser.add_argument('--train-on-valid', action='store_true',
                        help='train on the train and valid images together and test the last checkpoint (step 3 '
                             'runs with --no-validate: nothing is held out for model selection; the test images '
                             'stay unseen); its rows say '
                             '"train+valid" in the Budget column')
    parser.add_argument('--extra-train', type=Path,
                        help='COCO JSON of more training images, merged with the training split (absolute image '
                             'paths; e.g. python -m benchmarks.studies.pseudo_labels); its rows say "+N <label>" in '
                             'the Budget column')
    parser.add_argument('--train-images', type=int,
                        help='train on N of the training images (after --train-on-valid / --extra-train), a random '
                             'subset nested across N (--subset-seed), for proportionally more epochs (the same '
                             'optimiser steps): a point of a learning curve; its rows say "N/M img" in the Budget '
                             'column')
    parser.add_argument('--subset-seed', type=int, default=0,
                        help='seed of the --train-images subset, independent of --seed (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true', help='reuse a non-empty work dir')
    parser.add_argument('--echo', action='store_true', help='show the steps\' output live')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.infer_images < 1:
        fail(None, '--infer-images must be >= 1')
    results_md = args.results or (DEFAULT_RESULTS if args.max_epochs is None else None)
    result = run_benchmark(args.protocol, args.config, args.budget, args.work_dir, fold=args.fold,
                           data_dir=args.data_dir, shared_data=args.shared_data,
                           results_md=None if args.no_results else results_md, seed=args.seed,
                           infer_images=args.infer_images, pretrained=args.pretrained,
                           max_epochs=args.max_epochs, overwrite=args.overwrite, echo=args.echo,
                           ground_truth=args.ground_truth, train_on_valid=args.train_on_valid,
                           extra_train=args.extra_train, train_images=args.train_images,
                           subset_seed=args.subset_seed)
    for row in result_rows(result):
        print(f'{row["Protocol"]} {row["Split"]} [{row["Ground truth"]}] {row["Config"]} ({row["Budget"]}): '
              f'MRE {row["MRE"]} ± {row["SD"]} mm, SDR 2/2.5/3/4 mm {row["SDR 2mm"]} / {row["SDR 2.5mm"]} / '
              f'{row["SDR 3mm"]} / {row["SDR 4mm"]} %, train {row["Train img/s"]} img/s, '
              f'infer {row["Infer ms/img"]} ms/img')
    print(f'wrote {args.work_dir / "result.json"} and {args.work_dir / result["checkpoint"]}')
    return 0


if __name__ == '__main__':
    run_cli(main)
