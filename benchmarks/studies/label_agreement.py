"""Question: how far does the CL-Detection 2023 ground truth of landmarks 1-19 lie from each ISBI 2015
annotator's points? How the two ground truths relate, per landmark.

The 193 cl2023 images are ISBI 2015 images, and cl2023's landmarks 1-19 follow the ISBI definitions, but the
challenge re-annotated some of them. This measures by how much, per landmark: the radial distance (mm) of
cl2023's point from the ISBI senior annotator's, the junior's and their mean, and the share of points identical
to the senior's (within 0.15 mm). It decides whether ISBI's labels of the images outside the cl2023 subset
could serve as extra cl2023 training data: only where the two ground truths agree. ::

    python -m benchmarks.studies.label_agreement [--shared-data ../shared/data]

Prints a table (no files written).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from cldetection.challenge_io import load_landmarks
from cldetection.errors import fail, run_cli
from cldetection.landmarks import landmark_names
from cldetection.metric import radial_errors_mm

from ..data import (DEFAULT_SHARED_DATA, ISBI_ANNOTATORS, ISBI_NUM_LANDMARKS, ISBI_SPACING_MM, cl2023_image_paths,
                   isbi_landmarks, read_isbi_annotations)

REFERENCES = ('senior', 'junior', 'mean')
IDENTICAL_MM = 0.15  # below the JPEG's pixel rounding of either file (0.1 mm per pixel): the same click


def label_distances(shared_data: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """``{reference: images x 19 distances in mm}`` of cl2023's landmarks 1-19 from each ISBI reference, and
    the ISBI split (``train`` / ``test1``) of each image."""
    subset = shared_data / 'cl2023_subset'
    ground_truth = load_landmarks(subset / 'train-gt.json')
    images = cl2023_image_paths(subset)
    annotations = read_isbi_annotations(shared_data / 'isbi2015' / 'landmarks.csv')
    distances: dict[str, list[np.ndarray]] = {r: [] for r in REFERENCES}
    splits = []
    for z in ground_truth.slices:
        if z > len(images):
            fail(subset / 'train-gt.json', f'slice {z} has no image in images.txt ({len(images)} lines)')
        name = images[z - 1].name
        if name not in annotations:
            fail(subset / 'images.txt', f'line {z}: {name} is not an ISBI 2015 image of landmarks.csv')
        points = ground_truth.points[z]
        cl2023 = np.array([points[k] for k in range(1, ISBI_NUM_LANDMARKS + 1)], dtype=np.float64)
        spacing = ground_truth.spacing[z]
        if abs(spacing - ISBI_SPACING_MM) > 1e-9:
            fail(subset / 'train-gt.json', f'slice {z}: spacing {spacing} mm, ISBI 2015 images are 0.1 mm')
        for reference in REFERENCES:
            isbi = isbi_landmarks(annotations[name], reference)  # an annotator's points, or the mean of both
            distances[reference].append(radial_errors_mm(cl2023, isbi, spacing))
        splits.append(annotations[name].split)
    return {r: np.stack(d) for r, d in distances.items()}, splits


def format_table(distances: dict[str, np.ndarray]) -> list[str]:
    """Markdown table: per landmark, mean distance from each reference and the share identical to the senior."""
    names = landmark_names(ISBI_NUM_LANDMARKS)
    header = ['landmark'] + [f'from {r} (mm)' for r in REFERENCES] + [f'identical to senior (< {IDENTICAL_MM} mm) %']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    senior = distances['senior']
    for k in range(ISBI_NUM_LANDMARKS):
        cells = [f'{k + 1} {names[k]}'] + [f'{distances[r][:, k].mean():.2f}' for r in REFERENCES]
        cells.append(f'{100 * (senior[:, k] < IDENTICAL_MM).mean():.0f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    cells = ['**all**'] + [f'**{distances[r].mean():.3f}**' for r in REFERENCES]
    cells.append(f'**{100 * (senior < IDENTICAL_MM).mean():.0f}**')
    lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Per landmark, how far the CL-Detection 2023 ground truth of '
                                                 'landmarks 1-19 lies from the ISBI 2015 annotators '
                                                 f'({", ".join(ISBI_ANNOTATORS)} and their mean) on the shared '
                                                 'images.')
    parser.add_argument('--shared-data', type=Path, default=DEFAULT_SHARED_DATA,
                        help='real data folder with cl2023_subset/ and isbi2015/ (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    distances, splits = label_distances(args.shared_data)
    counts = {s: splits.count(s) for s in sorted(set(splits))}
    print(f'{len(splits)} images ({", ".join(f"{n} ISBI {s}" for s, n in counts.items())}), '
          f'landmarks 1-{ISBI_NUM_LANDMARKS}')
    print('\n'.join(format_table(distances)))
    return 0


if __name__ == '__main__':
    run_cli(main)
