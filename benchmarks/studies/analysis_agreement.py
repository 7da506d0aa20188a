"""Question: how often does a model's cephalometric class on ISBI 2015 Test1 equal the senior annotator's, next to
the junior annotator's? Class agreement of a model against the senior annotator, next to the junior.

For each of the eight measurements of :mod:`cldetection.analysis` (ANB, SNB, SNA, ODI, APDI, FHI, FMA, MW),
the share of Test1 images (151-300) whose class from the model's landmarks equals the class from the senior
annotator's (the official ISBI 2015 ground truth). The same figure for the junior annotator, computed
directly from ``landmarks.csv``, is the human reference. ::

    python -m benchmarks.studies.analysis_agreement                                    # the junior reference only
    python -m benchmarks.studies.analysis_agreement --prediction-json TEST1_PRED.json  # step 5 JSON, Test1 stack
    python -m benchmarks.studies.analysis_agreement --config CFG --checkpoint CKPT [--save-json TEST1_PRED.json]

A prediction JSON is step 5's output for the Test1 stack that ``benchmarks.data`` builds
(``benchmarks/work/data/isbi2015/test_stack.mha``): slice ``z`` is image ``150 + z``. With ``--config`` and
``--checkpoint`` the model predicts the 150 Test1 JPEGs itself through :class:`cldetection.predict.LandmarkPredictor`
(the step 5 predictor, on the images rather than a stack: same crop, same coordinates), and ``--save-json``
keeps that prediction in the same layout. Pixel spacing is 0.1 mm (ISBI 2015).

The results go to a delimited section of ``benchmarks/RESULTS.md`` (above the Runs table, which
``benchmarks.run`` appends to and ``benchmarks.summary`` follows with its summary; neither touches the
section). The junior row is rewritten on every run; a model row replaces the row of the same label and
leaves the others. ``--limit N`` (first N images, for a quick check) never writes to ``RESULTS.md``.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import cv2
import numpy as np

from cldetection.analysis import (MEASUREMENT_NAMES, Measurement, agreement_percent, analyse_landmarks,
                                  class_agreement, format_agreement)
from cldetection.errors import check_output_file, fail, run_cli

from ..data import DEFAULT_SHARED_DATA, ISBI_SPACING_MM, ISBI_TEST1_IMAGES, read_isbi_annotations
from ..process import REPO_ROOT

logger = logging.getLogger(__name__)

DEFAULT_RESULTS = REPO_ROOT / 'benchmarks' / 'RESULTS.md'
SECTION_START = ('<!-- analysis-agreement: written by python -m benchmarks.studies.analysis_agreement; '
                 'edits are lost -->')
#: how every start marker begins: the module's former path (``benchmarks.analysis_agreement``) wrote another one
SECTION_MARK = '<!-- analysis-agreement:'
SECTION_END = '<!-- /analysis-agreement -->'
SECTION_HEADING = '## Cephalometric class agreement (ISBI 2015 Test1)'
SECTION_INTRO = (
    'Share of the Test1 images (151-300) whose class from these landmarks equals the class from the senior '
    'annotator (the official ISBI 2015 ground truth), per measurement of `cldetection/analysis.py` (definitions '
    'and class cuts of Wang et al. 2016, as the challenge\'s classification script computes them), in %; Mean '
    'is the mean over the eight. The junior annotator is the human reference. A model row comes from '
    '`python -m benchmarks.studies.analysis_agreement --config CFG --checkpoint CKPT` or `--prediction-json JSON` '
    '(see `benchmarks/README.md`).')
JUNIOR_LABEL = 'junior annotator (human reference)'
COLUMNS: tuple[str, ...] = ('Source', 'Images', *MEASUREMENT_NAMES, 'Mean', 'Date', 'Commit')


# ------------------------------------------------------------------------------------------ landmarks
def test1_analyses(annotations: Mapping, annotator: str, names: Sequence[str]) -> list[dict[str, Measurement]]:
    return [analyse_landmarks(annotations[n].annotations[annotator], ISBI_SPACING_MM, source=n) for n in names]


def points_from_prediction_json(path: str | Path, num_images: int) -> list[np.ndarray]:
    """Landmarks 1-19 of slices ``1..num_images`` of a step 5 prediction JSON of the Test1 stack."""
    from cldetection.challenge_io import load_landmarks

    prediction = load_landmarks(path, require_spacing=False)
    wanted = list(range(1, num_images + 1))
    absent = [z for z in wanted if z not in prediction.points]
    if absent:
        fail(path, f'has no points for slice {absent[0]} ({len(absent)} of slices 1-{num_images} absent); '
                   'expected step 5 on the Test1 stack, where slice z is image 150 + z')
    extra = [z for z in prediction.slices if z > len(ISBI_TEST1_IMAGES)]
    if extra:
        fail(path, f'has slice {extra[0]}, but the Test1 stack has {len(ISBI_TEST1_IMAGES)} slices')
    lacking = {z: names for z, names in prediction.missing_landmarks(19).items() if z in wanted}
    if lacking:
        first = min(lacking)
        fail(path, f'slice {first} lacks landmark(s) {", ".join(map(str, lacking[first][:5]))}; '
                   'the analysis needs landmarks 1-19')
    return [prediction.as_array(z, 19)[0] for z in wanted]


def predict_test1(config: Path, checkpoint: Path, image_paths: Sequence[Path], device: str = 'auto',
                  batch_size: Optional[int] = None) -> list[np.ndarray]:
    """The model's landmarks of each image (RGB, padding cropped as step 5 does), in image pixels."""
    from cldetection.challenge_io import crop_zero_padding
    from cldetection.predict import LandmarkPredictor

    predictor = LandmarkPredictor(config, checkpoint, device=device, batch_size=batch_size)
    if predictor.num_landmarks < 19:
        fail(checkpoint, f'the model predicts {predictor.num_landmarks} landmarks; the analysis needs 19')
    points = []
    for start in range(0, len(image_paths), predictor.batch_size):
        batch = []
        for path in image_paths[start:start + predictor.batch_size]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                fail(path, 'cannot read the image')
            batch.append(np.ascontiguousarray(crop_zero_padding(image[:, :, ::-1])))
        points.extend(predictor.predict_images(batch))
        logger.info('predicted %d / %d Test1 images', len(points), len(image_paths))
    return points


# ------------------------------------------------------------------------------------------ RESULTS.md
def agreement_row(label: str, counts: Mapping[str, tuple[int, int]], date: str, commit: str) -> dict[str, str]:
    percent = agreement_percent(counts)
    finite = [v for v in percent.values() if math.isfinite(v)]
    images = sorted({total for _, total in counts.values()})
    return {'Source': label, 'Images': '/'.join(map(str, images)),
            **{name: f'{percent[name]:.1f}' for name in MEASUREMENT_NAMES},
            'Mean': f'{sum(finite) / len(finite):.1f}' if finite else 'nan', 'Date': date, 'Commit': commit}


def read_section_rows(lines: list[str]) -> list[dict[str, str]]:
    """The rows of the section's table (empty when there is no section)."""
    from ..results import section_rows

    return section_rows(lines, SECTION_MARK, SECTION_END)


def update_results(results_md: str | Path, rows: Sequence[dict[str, str]]) -> Path:
    """Write ``rows`` into the section of ``results_md`` (replacing rows of the same Source), leaving the rest.

    A new section goes just above the Runs table (or at the end of a file without one).
    """
    from ..results import read_lines, section_rows, table_section, write_section

    results_md = Path(results_md)
    # with results_md as the source: one marker without the other is an error that names the file
    kept = {r['Source']: r for r in section_rows(read_lines(results_md), SECTION_MARK, SECTION_END, results_md)}
    for row in rows:
        kept[row['Source']] = row
    ordered = [kept.pop(JUNIOR_LABEL)] if JUNIOR_LABEL in kept else []
    ordered += list(kept.values())
    section = table_section(SECTION_START, SECTION_HEADING, SECTION_INTRO, COLUMNS, ordered, SECTION_END)
    return write_section(results_md, section, SECTION_MARK, SECTION_END)


# ----------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Cephalometric class agreement on ISBI 2015 Test1 against the senior annotator: the junior '
                    'annotator (human reference) and optionally a model, from a step 5 prediction JSON of the '
                    'Test1 stack or a config + checkpoint. Writes a section of benchmarks/RESULTS.md.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('::')[1].split('A prediction')[0])
    parser.add_argument('--prediction-json', type=Path,
                        help='step 5 prediction JSON of the Test1 stack (slice z = image 150 + z)')
    parser.add_argument('--config', type=Path, help='config of the model to predict Test1 with (with --checkpoint)')
    parser.add_argument('--checkpoint', type=Path, help='its checkpoint (.pth)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N (default: auto)')
    parser.add_argument('--batch-size', type=int, default=None, help='images per forward pass')
    parser.add_argument('--save-json', type=Path,
                        help='with --config/--checkpoint: also write the prediction as a challenge JSON (slice z = '
                             'image 150 + z), reusable with --prediction-json')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --save-json')
    parser.add_argument('--label', help='the model row\'s name in RESULTS.md (default: from the config and '
                                        'checkpoint or the JSON); a row of the same name is replaced')
    parser.add_argument('--limit', type=int, help='only the first N Test1 images (a quick check; RESULTS.md is '
                                                  'left alone)')
    parser.add_argument('--shared-data', type=Path, default=DEFAULT_SHARED_DATA, help='default: %(default)s')
    parser.add_argument('--results', type=Path, default=DEFAULT_RESULTS, help='default: %(default)s')
    parser.add_argument('--no-results', action='store_true', help='print only; do not write RESULTS.md')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ..run import git_commit

    if (args.config is None) != (args.checkpoint is None):
        fail(None, '--config and --checkpoint go together')
    if args.prediction_json is not None and args.config is not None:
        fail(None, 'give either --prediction-json or --config/--checkpoint, not both')
    if args.save_json is not None and args.config is None:
        fail(None, '--save-json needs --config and --checkpoint (it saves their prediction)')
    if args.limit is not None and not 1 <= args.limit <= len(ISBI_TEST1_IMAGES):
        fail(None, f'--limit must be in 1..{len(ISBI_TEST1_IMAGES)}, got {args.limit}')
    names = list(ISBI_TEST1_IMAGES[:args.limit])
    save_json = check_output_file(args.save_json, args.overwrite) if args.save_json is not None else None

    annotations = read_isbi_annotations(args.shared_data / 'isbi2015' / 'landmarks.csv')
    senior = test1_analyses(annotations, 'senior', names)
    counts = {JUNIOR_LABEL: class_agreement(test1_analyses(annotations, 'junior', names), senior)}

    points = None
    if args.prediction_json is not None:
        points = points_from_prediction_json(args.prediction_json, len(names))
        label = args.label or f'model: {args.prediction_json.name}'
    elif args.config is not None:
        points = predict_test1(args.config, args.checkpoint, [args.shared_data / 'isbi2015' / 'images' / n for n in names],
                               args.device, args.batch_size)
        label = args.label or f'model: {args.config.stem} / {args.checkpoint.name}'
        if save_json is not None:
            from cldetection.challenge_io import prediction_document, write_json_atomic
            write_json_atomic(prediction_document({z: xy for z, xy in enumerate(points, start=1)}), save_json)
            print(f'wrote {save_json} (slice z = image 150 + z)')
    if points is not None:
        predicted = [analyse_landmarks(xy, ISBI_SPACING_MM, source=name) for xy, name in zip(points, names)]
        counts[label] = class_agreement(predicted, senior)

    for source, source_counts in counts.items():
        print(format_agreement(source_counts, f'{source} vs senior'))
    if args.no_results or args.limit is not None:
        return 0
    commit = git_commit()
    date, commit = datetime.date.today().isoformat(), commit[:12] + ('+dirty' if commit.endswith('+dirty') else '')
    rows = [agreement_row(source, c, date, commit) for source, c in counts.items()]
    print(f'updated {update_results(args.results, rows)}')
    return 0


if __name__ == '__main__':
    run_cli(main)
