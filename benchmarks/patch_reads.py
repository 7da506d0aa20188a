"""Can one local patch place the landmarks near its centre as well as their own patches do?

    python -m benchmarks.patch_reads CONFIG CHECKPOINT --data-root DIR [--split test] [--radii-mm 2.56 6.4]

The local stage outputs a heatmap of every landmark on every patch (it is trained on all landmarks inside its
patch), so landmark j can also be read off the patch cut around landmark k. This diagnostic cuts the patches as
the cascade does (around the global stage's estimates), reads every landmark off every patch whose centre lies
within 12.8 mm (half the default patch side) of its own, and prints:

- per band of centre distance, the MRE of those reads next to the MRE of the same landmarks read off their own
  patches: how much the local stage leans on its centre, and whether a second read carries new information;
- for each ``--radii-mm`` value, patch *sharing*: the fewest patches (greedy cover) whose centres lie within the
  radius of every landmark, each landmark read off the nearest of them: the MRE and the patches per image (the
  local stage's prediction cost is proportional to them).

Averaging the reads instead (the cascade's ``refine.test.neighbours`` switch) is measured with step 4:
``--cfg-options model.refine.test.neighbours=F``. A diagnostic, not the model's accuracy.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from benchmarks.cascade_oracle import cascade_test_runner, checkpoint_diagnostic_parser, coarse_test_points

logger = logging.getLogger('benchmarks.patch_reads')

#: reads of landmarks whose estimate lies further than this from the patch centre are not made
MAX_DISTANCE_MM = 12.8


def all_reads(config: Path, checkpoint: Path, data_root: Optional[str], split: str, out_dir: Path) -> list[dict]:
    """Per test image: ``truth`` and ``coarse`` (``K x 2`` radiograph pixels), ``reads`` (``K x K x 2``: landmark j
    read off patch k, NaN where not read or lost), ``distance`` (``K x K`` mm between the patch centres) and
    ``spacing`` (mm per pixel)."""
    import torch

    from cldetection.cascade import from_reduced, to_reduced

    runner = cascade_test_runner(config, checkpoint, data_root, split, 1, out_dir)
    model = runner.model
    stage = model.local_stage
    images = []
    for meta, truth, _, coarse in coarse_test_points(runner):
        spacing = float(meta['spacing'])
        source, factor = meta['source_img'], int(meta['source_factor'])
        reduction = stage.reduction(factor)
        scale, extent = factor * reduction, stage.level_extent(factor)
        centers = to_reduced(coarse, scale)
        patches, _ = model._cut_inputs(model._source_levels(source, stage, reduction), centers, extent, stage=stage)
        with torch.no_grad():
            heatmaps = model._refine_forward(patches, stage)
        distance = np.linalg.norm(coarse[:, None] - coarse[None], axis=2) * spacing
        reads = np.full((len(coarse), len(coarse), 2), np.nan)
        pairs = np.argwhere(distance <= MAX_DISTANCE_MM)  # (k, j): landmark j off patch k, its own patch included
        reads[pairs[:, 0], pairs[:, 1]] = from_reduced(
            model.reads_off_patches(heatmaps, pairs, centers, extent, stage), scale)
        images.append(dict(truth=truth, coarse=coarse, reads=reads, distance=distance, spacing=spacing))
    return images


def read_errors(images: list[dict]) -> np.ndarray:
    """Rows (centre distance mm, error of j read off patch k mm, error of j read off its own patch mm), one per
    found read of a landmark off another landmark's patch whose own read was found too."""
    rows = []
    for image in images:
        errors = np.linalg.norm(image['reads'] - image['truth'][None], axis=2) * image['spacing']  # [k, j]
        own = np.diag(errors)
        for k, j in np.argwhere(np.isfinite(errors) & ~np.eye(len(own), dtype=bool)):
            if np.isfinite(own[j]):
                rows.append((image['distance'][k, j], errors[k, j], own[j]))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def greedy_cover(distance: np.ndarray, radius_mm: float) -> list[int]:
    """Patch centres (landmark indices) such that every landmark lies within ``radius_mm`` of one: repeatedly the
    centre that covers most landmarks not yet covered (lowest index on ties)."""
    uncovered, chosen = set(range(len(distance))), []
    while uncovered:
        best = max(range(len(distance)), key=lambda k: (sum(distance[k, j] <= radius_mm for j in uncovered), -k))
        chosen.append(best)
        uncovered -= {j for j in uncovered if distance[best, j] <= radius_mm}
    return chosen


def shared_patch_errors(images: list[dict], radius_mm: float) -> tuple[float, float]:
    """MRE (mm) and mean patches per image when each landmark is read off the nearest patch of
    :func:`greedy_cover` (its global estimate where that read is lost)."""
    errors, counts = [], []
    for image in images:
        chosen = greedy_cover(image['distance'], radius_mm)
        counts.append(len(chosen))
        for j in range(len(image['truth'])):
            k = min(chosen, key=lambda c: image['distance'][c, j])
            point = image['reads'][k, j] if np.isfinite(image['reads'][k, j]).all() else image['coarse'][j]
            errors.append(np.linalg.norm(point - image['truth'][j]) * image['spacing'])
    return float(np.mean(errors)), float(np.mean(counts))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = checkpoint_diagnostic_parser(__doc__)
    parser.add_argument('--radii-mm', type=float, nargs='+', default=[2.56, 3.84, 5.12, 6.4],
                        help='patch-sharing radii in mm (default: %(default)s)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    for path in (args.config, args.checkpoint):
        if not path.is_file():
            parser.exit(2, f'{path}: no such file\n')
    if any(r <= 0 for r in args.radii_mm):
        parser.exit(2, f'--radii-mm: radii must be > 0 mm, got {args.radii_mm}\n')

    with tempfile.TemporaryDirectory() as tmp:
        images = all_reads(args.config, args.checkpoint, args.data_root, args.split, Path(tmp))
    own = [np.linalg.norm(np.diagonal(i['reads'], axis1=0, axis2=1).T - i['truth'], axis=1) * i['spacing']
           for i in images]
    print(f'{args.checkpoint} on the {args.split} split ({len(images)} images): own patches MRE '
          f'{np.nanmean(np.concatenate(own)):.3f} mm')
    rows = read_errors(images)
    print('centre distance mm | reads | MRE off the other patch | MRE of the same landmarks off their own patch')
    for low, high in ((0, 2), (2, 4), (4, 6.4), (6.4, 9), (9, MAX_DISTANCE_MM)):
        band = rows[(rows[:, 0] >= low) & (rows[:, 0] < high)]
        if len(band):
            print(f'{low:4.1f} - {high:4.1f}        | {len(band):5d} | {band[:, 1].mean():.3f} | '
                  f'{band[:, 2].mean():.3f}')
    print('sharing radius mm | patches per image | MRE mm')
    for radius in args.radii_mm:
        mre, patches = shared_patch_errors(images, radius)
        print(f'{radius:17.2f} | {patches:17.1f} | {mre:.3f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
