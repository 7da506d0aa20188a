"""The grand-challenge algorithm: the logic of ``step6_docker_and_upload/process.py``, and its helpers.

Contract (CL-Detection 2023 on grand-challenge.org, as the platform's current algorithm template runs it): the
container gets ``/input`` read-only, with ``/input/inputs.json`` (the platform's list of the job's socket values)
naming the input socket ``lateral-dental-x-rays`` and its folder (``images/lateral-dental-x-rays``, holding the
test stack ``*.mha``); it runs with no network and must write ``/output/orthodontic-landmarks.json`` in the
challenge's 'Multiple points' format (:func:`cldetection.challenge_io.prediction_document`: only the keys the
platform's schema defines). Without ``inputs.json`` (older platform versions, local runs) the fixed folder is
used. The same entry point runs outside Docker with ``--input-dir`` / ``--output-dir`` and a model. ``--engine auto``
(the default) predicts a cascade with ONNX Runtime where the container has no GPU and with PyTorch on a GPU
(:mod:`cldetection.inference_engine`; its ONNX files go beside the weights, or to the temporary folder where the
model folder is read-only).

The model (``config.py`` + ``weights.pth``), in this order: ``--config`` and ``--weights``; a model tarball
uploaded to the platform separately from the image (Algorithm > Models), which it unpacks into
``/opt/ml/model`` (``--model-dir`` or ``$CLDETECTION_MODEL_DIR`` move it; the two files at the tarball's top or in
one folder: ``tarball`` below writes one); the model baked into the image at build time (``/opt/algorithm/model``,
optional). A model folder that holds something else is an error, never silently passed over.

Several input stacks: grand-challenge hands one stack per job, but if a folder holds several, all are predicted
in file-name order and numbered on as if they were one stack: slice ``j`` of the ``i``-th stack gets
``z = (slices of stacks 1..i-1) + j``. A single stack is therefore numbered exactly as the challenge expects,
and nothing is silently dropped. Every stack is validated before the model is loaded.

Helpers for the shell scripts of step 6 (run them with ``python -m cldetection.grand_challenge``):

* ``stage``: write a self-contained copy of a config (its ``_base_`` chain resolved) and the weights into a
  folder for ``docker build``, after checking that the model loads from them.
* ``tarball``: the same two files as a ``.tar.gz`` to upload as the algorithm's model (unpacked to
  ``/opt/ml/model``).
* ``compare``: check a container's output against ``test/expected_output.json`` within a tolerance.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .challenge_io import (PREDICTION_NAME, PREDICTION_TYPE, StackInfo, atomic_output, load_landmarks,
                           prediction_document, read_json, read_stack_info, write_json_atomic)
from .errors import claim_output, fail, releasing_claims, run_cli
from .inference_engine import INT8_SUFFIX, cache_folder, check_engine, export_key, find_int8_networks
from .predict import LandmarkPredictor, add_model_arguments

logger = logging.getLogger(__name__)

#: The input socket (interface) of the challenge and its folder under /input.
INPUT_SOCKET = 'lateral-dental-x-rays'
INPUT_SUBDIR = Path('images/lateral-dental-x-rays')
#: The platform's description of a job's inputs: a list of socket values, each with a "socket" (older
#: platform versions: "interface") object holding "slug" and "relative_path".
INPUTS_JSON = 'inputs.json'
OUTPUT_NAME = 'orthodontic-landmarks.json'
#: Where the platform unpacks a model tarball uploaded separately from the image; the variable moves it.
UPLOADED_MODEL_DIR = Path('/opt/ml/model')
MODEL_DIR_ENV = 'CLDETECTION_MODEL_DIR'
#: Where the Dockerfile bakes a model in, when built with one (``stage`` writes these two names).
MODEL_DIR = Path('/opt/algorithm/model')
DEFAULT_CONFIG = MODEL_DIR / 'config.py'
DEFAULT_WEIGHTS = MODEL_DIR / 'weights.pth'
#: Default agreement required between a container's output and the expected output, in stack pixels.
#: GPU and CPU kernels differ in rounding, which moves a sub-pixel heatmap peak by far less than this.
DEFAULT_TOLERANCE_PX = 3.0


# ---------------------------------------------------------------------------------------------- inputs
def input_stack_folder(input_dir: Path) -> Path:
    """The folder of the ``lateral-dental-x-rays`` socket: as ``input_dir/inputs.json`` names it, or the fixed
    ``images/lateral-dental-x-rays`` when there is no ``inputs.json``."""
    listing = input_dir / INPUTS_JSON
    if not listing.is_file():
        return input_dir / INPUT_SUBDIR
    entries = read_json(listing)  # one-line errors: unreadable, not JSON, too large, nested too deeply
    if not isinstance(entries, list):
        fail(listing, f'expected a list of socket values, found a {type(entries).__name__}')
    slugs = []
    for entry in entries:
        socket = (entry.get('socket') or entry.get('interface')) if isinstance(entry, dict) else None
        if not isinstance(socket, dict):
            fail(listing, 'an entry has no "socket" (or "interface") object')
        slugs.append(socket.get('slug'))
        if socket.get('slug') != INPUT_SOCKET:
            continue
        relative = Path(str(socket.get('relative_path') or INPUT_SUBDIR))
        if relative.is_absolute() or '..' in relative.parts:
            fail(listing, f'relative_path {str(relative)!r} of "{INPUT_SOCKET}" leaves the input folder')
        return input_dir / relative
    fail(listing, f'no "{INPUT_SOCKET}" among the job\'s inputs {slugs}: is this the CL-Detection 2023 algorithm?')


def find_input_stacks(input_dir: str | Path) -> list[Path]:
    """The ``.mha`` stacks of the ``lateral-dental-x-rays`` input (:func:`input_stack_folder`), sorted by name."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        fail(input_dir, 'input folder not found' if not input_dir.exists() else 'input path is not a folder')
    stack_dir = input_stack_folder(input_dir)
    if not stack_dir.is_dir():
        fail(stack_dir, 'no such folder: the input folder must hold images/lateral-dental-x-rays/<stack>.mha')
    stacks = sorted(p for p in stack_dir.iterdir() if p.suffix.lower() == '.mha' and p.is_file())
    if not stacks:
        fail(stack_dir, 'no .mha stack in this folder' if any(stack_dir.iterdir()) else 'folder is empty')
    return stacks


# ---------------------------------------------------------------------------------------------- model
def _model_in(folder: Path) -> Optional[tuple[Path, Path]]:
    """``config.py`` and ``weights.pth`` in ``folder`` or in its one subfolder holding both; ``None`` when the
    folder is absent or empty; a one-line error when it holds something else."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    names = (DEFAULT_CONFIG.name, DEFAULT_WEIGHTS.name)
    present = [name for name in names if (folder / name).is_file()]
    if len(present) == 2:
        return folder / names[0], folder / names[1]
    if present:
        fail(folder, f'holds {present[0]} but no {(set(names) - set(present)).pop()}; a model is both files')
    nested = sorted(d for d in folder.iterdir() if d.is_dir() and all((d / name).is_file() for name in names))
    if len(nested) == 1:
        return nested[0] / names[0], nested[0] / names[1]
    listing = ', '.join(sorted(p.name for p in folder.iterdir())[:10])
    fail(folder, f'holds {listing} but not one model ({" + ".join(names)} at its top or in one folder; '
                 'python -m cldetection.grand_challenge tarball writes such a tarball)')


def resolve_model(config: Optional[Path], weights: Optional[Path], model_dir: Optional[Path] = None,
                  baked_dir: Path = MODEL_DIR) -> tuple[Path, Path]:
    """The model to run: ``config`` and ``weights`` when given (both), else the uploaded model in ``model_dir``
    (default ``$CLDETECTION_MODEL_DIR`` or ``/opt/ml/model``), else the one baked into the image."""
    if config is not None or weights is not None:
        if config is None or weights is None:
            fail(config or weights, '--config and --weights go together (or give neither: see --model-dir)')
        return config, weights
    if model_dir is None:
        model_dir = Path(os.environ.get(MODEL_DIR_ENV) or UPLOADED_MODEL_DIR)
    for folder in (model_dir, baked_dir):
        found = _model_in(folder)
        if found is not None:
            logger.info('model: %s + %s', *found)
            return found
    fail(model_dir, f'no model: upload a model tarball (unpacked here), build the image with one in {baked_dir}, '
                    'or pass --config and --weights')


def _output_path(output_dir: Path, overwrite: bool) -> Path:
    """The output JSON, claimed (:func:`cldetection.errors.claim_output`) until ``run_algorithm`` returns."""
    if output_dir.exists() and not output_dir.is_dir():
        fail(output_dir, 'output path exists and is not a folder')
    return claim_output(output_dir / OUTPUT_NAME, overwrite).path


@releasing_claims()  # a run that fails leaves no placeholder of the output it claimed
def run_algorithm(input_dir: str | Path, output_dir: str | Path, config_file: str | Path,
                  weights_file: str | Path, device: str = 'auto', batch_size: Optional[int] = None,
                  overwrite: bool = False, progress: bool = True, engine: str = 'pytorch') -> Path:
    """Predict every input stack and write ``output_dir/orthodontic-landmarks.json``; return its path.
    ``engine``: as :class:`cldetection.predict.LandmarkPredictor`'s (``process.py`` passes ``auto``: ONNX Runtime
    on a CPU, PyTorch on a GPU)."""
    check_engine(engine)
    stacks = find_input_stacks(input_dir)
    infos: list[StackInfo] = [read_stack_info(p) for p in stacks]  # all valid before the model loads
    output = _output_path(Path(output_dir), overwrite)
    if len(stacks) > 1:
        logger.warning('%d stacks in %s (grand-challenge gives one per job): numbering their slices on, in '
                       'this order: %s', len(stacks), stacks[0].parent, ', '.join(p.name for p in stacks))
    predictor = LandmarkPredictor(config_file, weights_file, device=device, batch_size=batch_size, engine=engine)
    points: dict[int, np.ndarray] = {}
    offset = 0
    for info in infos:
        prediction = predictor.predict_stack(info.path, progress=progress, info=info)
        points.update({offset + z: xy for z, xy in prediction.points.items()})
        offset += info.num_slices
    write_json_atomic(prediction_document(points), output)
    logger.info('wrote %s: %d slices x %d landmarks', output, len(points), predictor.num_landmarks)
    return output


# ------------------------------------------------------------------------------------ output checking
def prediction_schema_problems(document: Any) -> list[str]:
    """What makes ``document`` not a valid challenge prediction JSON (empty list: valid).

    The schema: ``{"name": "Orthodontic landmarks", "type": "Multiple points", "points": [...],
    "version": {"major": 1, "minor": 0}}``; each point ``{"name": "<k>", "point": [x, y, z]}`` with ``k``
    and ``z`` integers >= 1 (``z`` a JSON integer), ``x, y`` finite floats; ordered by ``z`` then ``k``; every
    slice has landmarks ``1..K`` for one ``K``.
    """
    if not isinstance(document, dict):
        return [f'top level is a {type(document).__name__}, not an object']
    problems = []
    expected = {'name': PREDICTION_NAME, 'type': PREDICTION_TYPE, 'version': {'major': 1, 'minor': 0}}
    problems += [f'"{key}" is {document.get(key)!r}, expected {value!r}'
                 for key, value in expected.items() if document.get(key) != value]
    extra = set(document) - set(expected) - {'points'}
    if extra:
        problems.append(f'unexpected top-level keys {sorted(extra)}')
    points = document.get('points')
    if not isinstance(points, list) or not points:
        return problems + ['"points" must be a non-empty list']
    keys: list[tuple[int, int]] = []
    for i, entry in enumerate(points):
        where = f'point #{i + 1}'
        if not isinstance(entry, dict) or set(entry) != {'name', 'point'}:
            problems.append(f'{where} must be an object with exactly "name" and "point"')
            continue
        name, xyz = entry['name'], entry['point']
        if not isinstance(name, str) or not name.isdigit() or int(name) < 1:
            problems.append(f'{where}: name {name!r} is not a landmark number string "1", "2", ...')
            continue
        if not (isinstance(xyz, list) and len(xyz) == 3 and all(isinstance(v, float) and math.isfinite(v)
                                                                 for v in xyz[:2])
                and type(xyz[2]) is int and xyz[2] >= 1):
            problems.append(f'{where}: point {xyz!r} is not [x float, y float, z int >= 1]')
            continue
        keys.append((xyz[2], int(name)))
    if problems:
        return problems
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        problems.append('points are not ordered by slice then landmark without repeats')
    per_slice: dict[int, list[int]] = {}
    for z, k in keys:
        per_slice.setdefault(z, []).append(k)
    counts = {len(v) for v in per_slice.values()}
    if len(counts) != 1 or any(sorted(v) != list(range(1, len(v) + 1)) for v in per_slice.values()):
        problems.append('slices do not all hold landmarks 1..K for the same K')
    return problems


@dataclass
class Comparison:
    """Result of :func:`compare_predictions`: problems (empty: outputs agree) and the largest distance."""
    problems: list[str] = field(default_factory=list)
    max_distance_px: float = 0.0
    num_points: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def compare_predictions(actual_path: str | Path, expected_path: str | Path,
                        tolerance_px: float = DEFAULT_TOLERANCE_PX) -> Comparison:
    """Compare two prediction JSONs: ``actual`` must be schema-valid, cover the same slices and landmarks as
    ``expected``, and put every landmark within ``tolerance_px`` (Euclidean, stack pixels) of it."""
    actual_path, expected_path = Path(actual_path), Path(expected_path)
    expected = load_landmarks(expected_path, require_spacing=False)
    actual = load_landmarks(actual_path, require_spacing=False)  # one-line error if unreadable
    result = Comparison(prediction_schema_problems(read_json(actual_path)))
    if actual.slices != expected.slices:
        result.problems.append(f'slices {actual.slices[:10]}... differ from the expected {expected.slices[:10]}...')
        return result
    worst: list[tuple[float, int, int]] = []
    for z in expected.slices:
        if set(actual.points[z]) != set(expected.points[z]):
            result.problems.append(f'slice {z}: landmarks {sorted(actual.points[z])} differ from the expected '
                                   f'{sorted(expected.points[z])}')
            continue
        for k, (x, y) in expected.points[z].items():
            ax, ay = actual.points[z][k]
            distance = math.hypot(ax - x, ay - y)
            result.num_points += 1
            result.max_distance_px = max(result.max_distance_px, distance)
            if distance > tolerance_px:
                worst.append((distance, z, k))
    if worst:
        worst.sort(reverse=True)
        listing = ', '.join(f'slice {z} landmark {k}: {d:.2f} px' for d, z, k in worst[:5])
        result.problems.append(f'{len(worst)} of {result.num_points} landmarks are more than {tolerance_px} px '
                               f'from the expected output ({listing})')
    return result


# ------------------------------------------------------------------------------------------- staging
def stage_model(config_file: str | Path, weights_file: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Copy a model into ``out_dir`` as ``config.py`` (self-contained: ``_base_`` files resolved) and
    ``weights.pth``, after checking that the predictor loads them; return both paths. The weights' error calibration
    (``<weights>.calibration.json``, :mod:`cldetection.calibrate`), when there is one, goes with them as
    ``weights.pth.calibration.json``: the weights are copied byte for byte, so it stays theirs."""
    from mmengine.config import Config

    from .cascade import CascadeLandmarkEstimator
    from .confidence import calibration_path

    predictor = LandmarkPredictor(config_file, weights_file, device='cpu')  # one-line error now, not in the image
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_out, weights_out = out_dir / DEFAULT_CONFIG.name, out_dir / DEFAULT_WEIGHTS.name
    for path in (config_out, weights_out):
        if path.exists():
            fail(path, 'already exists; stage into an empty folder')
    Config.fromfile(str(config_file)).dump(str(config_out))
    shutil.copyfile(weights_file, weights_out)
    if calibration_path(weights_file).is_file():
        shutil.copyfile(calibration_path(weights_file), calibration_path(weights_out))
    # the int8 networks python -m cldetection.quantize made for these weights (found by the export key of the model
    # built from them, batch norms folded, as step 5 finds them)
    quantized = find_int8_networks(export_key(predictor.model), [cache_folder(weights_file)]) \
        if isinstance(predictor.model, CascadeLandmarkEstimator) else None
    for int8_file in (quantized or {}).values():
        cache_folder(weights_out).mkdir(exist_ok=True)
        shutil.copyfile(int8_file, cache_folder(weights_out) / int8_file.name)
    LandmarkPredictor(config_out, weights_out, device='cpu')  # the staged copy must load on its own
    return config_out, weights_out


@releasing_claims()
def write_model_tarball(config_file: str | Path, weights_file: str | Path, out: str | Path,
                        overwrite: bool = False) -> Path:
    """Stage a model (:func:`stage_model`) into ``out`` (``.tar.gz``) with ``config.py`` and ``weights.pth`` at
    its top, as the platform unpacks it into ``/opt/ml/model``. Written under a temporary name, then renamed."""
    from .confidence import calibration_path

    out = claim_output(out, overwrite).path
    with tempfile.TemporaryDirectory(prefix='cldetection-model.') as tmp:
        staged = stage_model(config_file, weights_file, tmp)
        calibration = calibration_path(staged[1])
        with atomic_output(out) as part, tarfile.open(part, 'w:gz') as tar:
            for path in (*staged, calibration) if calibration.is_file() else staged:
                tar.add(path, arcname=path.name)
            for path in sorted(cache_folder(staged[1]).glob(f'*{INT8_SUFFIX}')):
                tar.add(path, arcname=f'{path.parent.name}/{path.name}')
    return out


# ----------------------------------------------------------------------------------------------- CLIs
def build_process_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='process.py',
        description='CL-Detection 2023 grand-challenge algorithm: predict the 38 landmarks of every slice of '
                    f'INPUT/{INPUT_SUBDIR}/*.mha and write OUTPUT/{OUTPUT_NAME}. Several stacks are numbered '
                    'on in file-name order, as if they were one.')
    parser.add_argument('--input-dir', type=Path, default=Path('/input'), help='default: /input')
    parser.add_argument('--output-dir', type=Path, default=Path('/output'), help='default: /output')
    parser.add_argument('--config', type=Path, default=None,
                        help='model config (with --weights); default: the model in --model-dir, else the one in '
                             f'{MODEL_DIR}')
    parser.add_argument('--weights', type=Path, default=None, help='model checkpoint (with --config)')
    parser.add_argument('--model-dir', type=Path, default=None,
                        help=f'where the platform unpacks an uploaded model tarball (default: ${MODEL_DIR_ENV} or '
                             f'{UPLOADED_MODEL_DIR})')
    add_model_arguments(parser)
    parser.add_argument('--overwrite', action='store_true', help=f'replace an existing OUTPUT/{OUTPUT_NAME}')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar (logs only)')
    return parser


def process_main(argv: Optional[Sequence[str]] = None) -> int:
    """``process.py``: the container's entry point."""
    args = build_process_parser().parse_args(argv)
    config, weights = resolve_model(args.config, args.weights, args.model_dir)
    run_algorithm(args.input_dir, args.output_dir, config, weights, device=args.device,
                  batch_size=args.batch_size, overwrite=args.overwrite, progress=not args.no_progress,
                  engine=args.engine)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m cldetection.grand_challenge',
                                     description='Helpers for step 6 (grand-challenge container).')
    commands = parser.add_subparsers(dest='command', required=True)
    stage = commands.add_parser('stage', help='copy a config (resolved) and weights into a folder for docker build')
    stage.add_argument('--config', type=Path, required=True)
    stage.add_argument('--weights', type=Path, required=True)
    stage.add_argument('--out', type=Path, required=True, help='folder to write config.py and weights.pth into')
    tarball = commands.add_parser('tarball', help='write a model tarball to upload (unpacked to /opt/ml/model)')
    tarball.add_argument('--config', type=Path, required=True)
    tarball.add_argument('--weights', type=Path, required=True)
    tarball.add_argument('--out', type=Path, required=True, help='the .tar.gz to write')
    tarball.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    compare = commands.add_parser('compare', help='check an output JSON against the expected one')
    compare.add_argument('actual', type=Path, help=f'the {OUTPUT_NAME} to check')
    compare.add_argument('expected', type=Path, help='the expected output (e.g. test/expected_output.json)')
    compare.add_argument('--tolerance', type=float, default=DEFAULT_TOLERANCE_PX,
                         help=f'largest allowed distance per landmark, in stack pixels (default {DEFAULT_TOLERANCE_PX})')
    args = parser.parse_args(argv)
    if args.command == 'stage':
        config_out, weights_out = stage_model(args.config, args.weights, args.out)
        print(f'staged {config_out} and {weights_out}')
        return 0
    if args.command == 'tarball':
        out = write_model_tarball(args.config, args.weights, args.out, args.overwrite)
        print(f'wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): upload it under your algorithm\'s Models')
        return 0
    result = compare_predictions(args.actual, args.expected, args.tolerance)
    if not result.ok:
        print(f'error: {args.actual}: ' + '; '.join(result.problems))
        return 1
    print(f'OK: {result.num_points} landmarks agree with {args.expected.name} within {args.tolerance} px '
          f'(largest distance {result.max_distance_px:.3f} px)')
    return 0


if __name__ == '__main__':
    run_cli(main)
