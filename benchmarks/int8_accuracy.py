"""Does the int8 engine keep the float32 engine's accuracy? MRE / SDR of both on held-out test images.

    python -m benchmarks.int8_accuracy --config RUN/config.py --checkpoint RUN/best.pth \
        --calibration-images DATA/train.json --ann-file DATA/test.json --label "cl2023 fold 1"

Quantises the checkpoint as ``python -m cldetection.quantize`` does (its default number of calibration images, taken
from the training images of ``--calibration-images``: a step 2 annotation file or a folder) into a temporary folder
-- never beside the checkpoint -- then predicts every image of ``--ann-file`` with ONNX Runtime on the float32
networks and on the int8 ones, and writes one row per engine to a delimited section of ``benchmarks/RESULTS.md``:
MRE, SDR 2 mm, the MRE's difference from float32 (the condition for offering int8: within 0.02 mm on cl2023 fold 1
and ISBI 2015 Test1, issue 40), the largest landmark shift between the two, and seconds per image in this process
(preprocessing and both stages; reading the file excluded). Run it on an idle machine for the seconds.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

import cldetection  # noqa: F401
from cldetection.calibrate import read_labelled_images
from cldetection.errors import run_cli
from cldetection.image_io import read_radiograph
from cldetection.inference_engine import InferenceEngine, OnnxRuntimeNetwork
from cldetection.quantize import (DEFAULT_NUM_IMAGES, calibration_subset, quantize_checkpoint, quantize_network,
                                  record_network_inputs)

from .engine_speed import cpu_description
from .results import format_row, read_lines, section_rows, table_section, write_section
from .run import git_commit

logger = logging.getLogger(__name__)

FULL_RANGE = 'onnxruntime-int8, 8-bit weights (not shipped)'
SECTION_START = '<!-- int8-accuracy: written by python -m benchmarks.int8_accuracy; edits are lost -->'
SECTION_END = '<!-- /int8-accuracy -->'
COLUMNS = ('Test set', 'Engine', 'Images', 'MRE', 'SDR 2 mm %', 'MRE - float32', 'Largest shift from float32 mm',
           's/image', 'CPU', 'Date', 'Commit')
INTRO = ('Written by `python -m benchmarks.int8_accuracy` (see its docstring): the default config\'s checkpoint of '
         'each test set, its networks in ONNX Runtime as exported (float32) and quantised by `python -m '
         f'cldetection.quantize` on {DEFAULT_NUM_IMAGES} of its training images (int8), on the same test images. '
         'The int8 engine is offered (`--engine onnxruntime-int8`, and `auto` once quantised) only where its MRE '
         'stays within 0.02 mm of float32 on cl2023 fold 1 and ISBI 2015 Test1 (issue 40); it has 7-bit weights, '
         'and the row "8-bit weights" (`--full-range`) shows why. s/image: preprocessing and both stages in one '
         'process, 2 threads, file reading excluded.')


def calibration_images(source: Path) -> list[Path]:
    """The training images named by a step 2 annotation file, or a folder's images."""
    from cldetection.image_io import find_images

    if source.suffix == '.json':
        return [image.path for image in read_labelled_images(source)]
    return find_images([source])


def predict_all(predictor, images: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Landmarks (``N x K x 2``) of ``images`` and the seconds per image."""
    started = time.perf_counter()
    points = predictor.predict_images(images)
    return points, (time.perf_counter() - started) / len(images)


def update_results(results_md: Path, rows: list[dict[str, str]]) -> Path:
    """Replace the rows of the same test set and engine in the section; keep the others."""
    old = section_rows(read_lines(results_md), SECTION_START, SECTION_END, results_md)
    keys = {(r['Test set'], r['Engine']) for r in rows}
    rows = [r for r in old if (r.get('Test set'), r.get('Engine')) not in keys] + rows
    section = table_section(SECTION_START, '## Step 5 in int8: accuracy against float32 (issue 40)', INTRO, COLUMNS,
                            rows, SECTION_END)
    return write_section(results_md, section, SECTION_START, SECTION_END, above='## Cascade ablation')


def main(argv: Optional[Sequence[str]] = None) -> int:
    from cldetection.predict import LandmarkPredictor

    parser = argparse.ArgumentParser(description='MRE of the int8 engine against the float32 engine on held-out '
                                                 'test images; writes a section of benchmarks/RESULTS.md.')
    parser.add_argument('--config', type=Path, required=True, help='the config the checkpoint was trained with')
    parser.add_argument('--checkpoint', type=Path, required=True, help='checkpoint (e.g. a benchmarks.run best.pth)')
    parser.add_argument('--calibration-images', type=Path, required=True,
                        help='training images to quantise on: a step 2 annotation file (e.g. DATA/train.json) or '
                             'a folder')
    parser.add_argument('--ann-file', type=Path, required=True, help='step 2 annotation file of the test images')
    parser.add_argument('--label', required=True, help='test set label for the table, e.g. "cl2023 fold 1"')
    parser.add_argument('--full-range', action='store_true',
                        help=f'also measure int8 with 8-bit weights (row "{FULL_RANGE}"), which saturate in the u8s8 '
                             'kernels of CPUs without AVX-VNNI')
    parser.add_argument('--results', type=Path, default=Path(__file__).with_name('RESULTS.md'))
    parser.add_argument('--no-results', action='store_true', help='print only')
    args = parser.parse_args(argv)
    test = read_labelled_images(args.ann_file)
    images = [read_radiograph(image.path).image for image in test]
    truth = np.stack([image.keypoints for image in test])
    spacing = np.array([image.spacing_mm for image in test])[:, None]
    with tempfile.TemporaryDirectory(prefix='int8-accuracy.') as tmp:
        weights = Path(tmp) / args.checkpoint.name
        weights.symlink_to(args.checkpoint.resolve())  # the ONNX files go beside the link: into tmp
        calibration = calibration_subset(calibration_images(args.calibration_images), DEFAULT_NUM_IMAGES)
        quantize_checkpoint(args.config, weights, calibration)
        results, predictors = {}, {}
        for engine in ('onnxruntime', 'onnxruntime-int8'):
            predictors[engine] = LandmarkPredictor(args.config, weights, device='cpu', engine=engine)
            results[engine] = predict_all(predictors[engine], images)
        if args.full_range:
            # the same recipe with 8-bit weights (quantize_static's default), which cldetection.quantize avoids
            predictor = predictors['onnxruntime']
            batches, files = record_network_inputs(predictor, calibration, progress=False), {}
            for name, float_file in predictor.model.engine.files.items():
                files[name] = Path(tmp) / f'{name}.full-range.onnx'
                quantize_network(float_file, files[name], batches[name], reduce_range=False)
            predictor.model.set_engine(InferenceEngine(FULL_RANGE, OnnxRuntimeNetwork(files['global']),
                                                       OnnxRuntimeNetwork(files['local']), files))
            results[FULL_RANGE] = predict_all(predictor, images)
    date, commit, cpu = datetime.date.today().isoformat(), git_commit()[:12], cpu_description()
    reference = results['onnxruntime'][0]
    float32_mre = np.nanmean(np.linalg.norm(reference - truth, axis=-1) * spacing)
    rows = []
    for engine, (points, seconds) in results.items():
        errors = np.linalg.norm(points - truth, axis=-1) * spacing
        labelled = np.isfinite(errors)
        shift = np.linalg.norm(points - reference, axis=-1) * spacing
        rows.append({'Test set': args.label, 'Engine': engine, 'Images': str(len(test)),
                     'MRE': f'{np.nanmean(errors):.3f}', 'SDR 2 mm %': f'{100 * np.mean(errors[labelled] < 2):.2f}',
                     'MRE - float32': f'{np.nanmean(errors) - float32_mre:+.3f}',
                     'Largest shift from float32 mm': f'{np.nanmax(shift):.2f}', 's/image': f'{seconds:.3f}',
                     'CPU': cpu, 'Date': date, 'Commit': commit})
    print('\n'.join([format_row(COLUMNS)] + [format_row([r[c] for c in COLUMNS]) for r in rows]))
    if not args.no_results:
        print(f'wrote {update_results(args.results, rows)}')
    return 0


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s',
                        datefmt='%H:%M:%S')
    run_cli(main)
