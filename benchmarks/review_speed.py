"""Step 5 with predicted errors and a report against step 5 on a stack: seconds per image on this CPU.

    python -m benchmarks.review_speed --config CONFIG --checkpoint CKPT --images ISBI/001.jpg ... [--engine auto]

In one process, with one loaded model (its calibration beside it, ``python -m cldetection.calibrate``), on the same
radiographs: today's path (``LandmarkPredictor.predict_stack`` on a challenge stack of the images: reading,
cropping, both stages) and step 5 ``--images`` (:func:`cldetection.image_prediction.predict_image_files`: reading,
both stages, predicted errors, review flags, measurement intervals; then each image's CSV, JSON and overlay; then
``measurements.csv`` and ``report.html``). Each path runs twice and the second run counts (the first warms caches
and the engine). Writes a row to the "Speed" table of ``benchmarks/RESULTS.md``'s "Predicted error per landmark"
section (targets, issue 41: prediction with confidence <= 1.5 x the stack path; the report < 0.1 s per image).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import cldetection  # noqa: F401
from cldetection.errors import run_cli

from .confidence import update_results
from .engine_speed import cpu_description
from .results import format_row
from .run import git_commit

COLUMNS = ('CPU', 'Engine', 'Images', 'Stack s/image', 'With confidence s/image', 'Ratio',
           'Outputs s/image (CSV, JSON, overlay)', 'Report s/image', 'Date', 'Commit')


def main(argv: Optional[Sequence[str]] = None) -> int:
    from cldetection.challenge_io import read_stack_info
    from cldetection.image_prediction import predict_image_files
    from cldetection.predict import LandmarkPredictor
    from cldetection.stack import build_stack

    parser = argparse.ArgumentParser(description='Seconds per image of step 5 --images (predicted errors, '
                                                 'measurements, report) against step 5 on a stack.')
    parser.add_argument('--config', type=Path, required=True)
    parser.add_argument('--checkpoint', type=Path, required=True, help='weights with a calibration beside them')
    parser.add_argument('--images', type=Path, nargs='+', required=True, help='radiographs (at most 2400 x 2880)')
    parser.add_argument('--engine', default='auto',
                        help='auto, pytorch, onnxruntime or onnxruntime-int8, as in step 5 (default: auto)')
    parser.add_argument('--results', type=Path, default=Path(__file__).with_name('RESULTS.md'))
    parser.add_argument('--no-results', action='store_true', help='print only')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='review-speed.') as tmp:
        stack = build_stack(args.images, Path(tmp) / "stack.mha", progress=False)
        predictor = LandmarkPredictor(args.config, args.checkpoint, device='cpu', engine=args.engine)
        info = read_stack_info(stack)
        for _ in range(2):
            stack_seconds = predictor.predict_stack(stack, progress=False, info=info).seconds_per_slice
        for attempt in range(2):
            # the product's function, with its own model load (excluded from its figures)
            run = predict_image_files(args.config, args.checkpoint, args.images, Path(tmp) / f'out{attempt}',
                                      spacing_mm=0.1, device='cpu', engine=predictor.engine, progress=False)
    row = {'CPU': cpu_description(), 'Engine': predictor.engine, 'Images': str(len(args.images)),
           'Stack s/image': f'{stack_seconds:.3f}', 'With confidence s/image': f'{run.seconds_per_image:.3f}',
           'Ratio': f'{run.seconds_per_image / stack_seconds:.2f}',
           'Outputs s/image (CSV, JSON, overlay)': f'{run.output_seconds_per_image:.3f}',
           'Report s/image': f'{run.report_seconds / max(len(run.results), 1):.3f}',
           'Date': time.strftime('%Y-%m-%d'), 'Commit': git_commit()[:12]}
    print(format_row(COLUMNS) + '\n' + format_row([row[c] for c in COLUMNS]))
    if not args.no_results:
        print(f'wrote {update_results(args.results, {"Speed": (COLUMNS, [row])}, key="Commit")}')
    return 0


if __name__ == '__main__':
    run_cli(main)
