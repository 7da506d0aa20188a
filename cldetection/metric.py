"""Challenge scoring: mean radial error (MRE) and success detection rate (SDR), and ``CephalometricMetric``.

Definitions (as the CL-Detection 2023 evaluation): the radial error of a landmark is the Euclidean distance
between prediction and ground truth in pixels times that image's spacing (mm per pixel). MRE is the mean over
every landmark of every image (pooled, not a mean of per-image means); ``MRE_SD`` is the population standard
deviation of the same errors. ``SDR r mm`` is the percentage of those errors <= r: an error equal to the radius
counts as a success (a 1e-9 mm tolerance absorbs floating-point rounding such as 20 px x 0.1 mm). Landmarks the
ground truth marks invisible (v = 0) are excluded from every figure and counted separately.

The pure functions here are used by the metric (steps 3 and 4) and by step 5's ``--gt_json`` evaluation, so
every number the project reports comes from one implementation.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmpose.registry import METRICS

from .challenge_io import atomic_output

DEFAULT_RADII: tuple[float, ...] = (2.0, 2.5, 3.0, 4.0)
_TOLERANCE_MM = 1e-9


def sdr_key(radius: float) -> str:
    """Metric key for a radius: ``SDR 2.0mm``, ``SDR 2.5mm``, ..."""
    return f'SDR {radius:.1f}mm'


def radial_errors_mm(pred: np.ndarray, gt: np.ndarray, spacing: float | np.ndarray) -> np.ndarray:
    """Radial errors in mm. ``pred``, ``gt``: ``(..., K, 2)`` pixels; ``spacing``: mm/pixel, per image."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=np.float64)
    distance = np.linalg.norm(pred - gt, axis=-1)
    return distance * (spacing[..., None] if spacing.ndim else spacing)


def summarize_errors(errors_mm: np.ndarray, visible: Optional[np.ndarray] = None,
                     radii: Sequence[float] = DEFAULT_RADII) -> dict[str, float]:
    """``MRE``, ``MRE_SD`` and ``SDR r mm`` (percent) over the visible entries of ``errors_mm``."""
    errors = np.asarray(errors_mm, dtype=np.float64)
    mask = np.ones(errors.shape, dtype=bool) if visible is None else np.asarray(visible).astype(bool)
    valid = errors[mask & np.isfinite(errors)]
    if valid.size == 0:
        return {'MRE': float('nan'), 'MRE_SD': float('nan'), **{sdr_key(r): float('nan') for r in radii}}
    result = {'MRE': float(valid.mean()), 'MRE_SD': float(valid.std())}
    for r, rate in zip(radii, success_rates(valid, radii)):
        result[sdr_key(r)] = float(rate)
    return result


def success_rates(errors_mm: np.ndarray, radii: Sequence[float]) -> np.ndarray:
    """Percentage of the finite ``errors_mm`` that are <= each radius (an error equal to the radius counts)."""
    valid = np.asarray(errors_mm, dtype=np.float64).ravel()
    valid = np.sort(valid[np.isfinite(valid)])
    if valid.size == 0:
        return np.full(len(radii), np.nan)
    return 100.0 * np.searchsorted(valid, np.asarray(radii, dtype=np.float64) + _TOLERANCE_MM,
                                   side='right') / valid.size


def per_landmark_rows(errors_mm: np.ndarray, visible: np.ndarray, names: Sequence[str],
                      radii: Sequence[float] = DEFAULT_RADII) -> list[dict]:
    """One row per landmark: its MRE, SD and SDRs over all images (``errors_mm``: N x K)."""
    rows = []
    for k, name in enumerate(names):
        summary = summarize_errors(errors_mm[:, k], visible[:, k], radii)
        rows.append({'landmark': k + 1, 'name': name, 'count': int(np.count_nonzero(visible[:, k])),
                     **summary})
    return rows


def unlearned_landmarks(errors_mm: np.ndarray, visible: np.ndarray, factor: float = 5.0,
                        min_mm: float = 10.0) -> list[tuple[int, float, float]]:
    """Landmarks whose MRE is both over ``min_mm`` and ``factor`` times the median landmark's MRE.

    Returns ``(landmark index, its MRE, the median landmark MRE)`` per such landmark. From scratch, a heatmap
    model can leave a landmark's channel flat (the MSE on a small Gaussian rewards predicting zero); that landmark
    then errs by centimetres while the others are fine, which the pooled MRE hides in a slightly worse number.
    """
    per_landmark = np.array([summarize_errors(errors_mm[:, k], visible[:, k])['MRE']
                             for k in range(errors_mm.shape[1])])
    finite = per_landmark[np.isfinite(per_landmark)]
    if finite.size < 3:
        return []
    median = float(np.median(finite))
    return [(k, float(v), median) for k, v in enumerate(per_landmark)
            if np.isfinite(v) and v > min_mm and v > factor * median]


def per_image_rows(errors_mm: np.ndarray, visible: np.ndarray, image_ids: Sequence, image_names: Sequence[str],
                   spacings: Sequence[float], radii: Sequence[float] = DEFAULT_RADII) -> list[dict]:
    """One row per image: its MRE, SD, SDRs, and every landmark's error (``error_<k>``, blank if invisible)."""
    rows = []
    for i in range(errors_mm.shape[0]):
        row = {'img_id': image_ids[i], 'image': image_names[i], 'spacing': float(spacings[i]),
               'count': int(np.count_nonzero(visible[i])), **summarize_errors(errors_mm[i], visible[i], radii)}
        for k in range(errors_mm.shape[1]):
            row[f'error_{k + 1}'] = float(errors_mm[i, k]) if visible[i, k] else ''
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write dict rows as CSV (header from the first row), under a temporary name renamed when complete."""
    path = Path(path)
    with atomic_output(path, suffix='.csv') as tmp, open(tmp, 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    return path


def format_table(metrics: dict[str, float]) -> str:
    """The metrics as a two-line text table (MRE +- SD in mm, SDRs in %)."""
    sdrs = [k for k in metrics if k.startswith('SDR ')]
    head = ['MRE (mm)'] + [k.replace('SDR ', 'SDR ') for k in sdrs]
    vals = [f'{metrics["MRE"]:.3f} ± {metrics["MRE_SD"]:.3f}'] + [f'{metrics[k]:.2f} %' for k in sdrs]
    widths = [max(len(h), len(v)) for h, v in zip(head, vals)]
    return '\n'.join(' | '.join(c.ljust(w) for c, w in zip(row, widths)) for row in (head, vals))


# --------------------------------------------------------------------------------------- MMEngine metric
@METRICS.register_module()
class CephalometricMetric(BaseMetric):
    """MRE / SDR for cephalometric landmarks, in mm, pooled over all landmarks of all images.

    Returns exactly ``MRE``, ``MRE_SD``, ``SDR 2.0mm``, ``SDR 2.5mm``, ``SDR 3.0mm``, ``SDR 4.0mm`` (for the
    default radii) with no prefix, so ``save_best='SDR 2.0mm'`` (higher is better) or ``'MRE'`` work.
    Each sample needs ``spacing`` in its metainfo (``PackCephalometricInputs`` provides it).

    Args:
        radii: SDR radii in mm.
        output_dir: if set, write ``per_landmark.csv`` and ``per_image.csv`` there at each evaluation.
        collect_device, prefix: as :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix: Optional[str] = None

    def __init__(self, radii: Sequence[float] = DEFAULT_RADII, output_dir: Optional[str] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.radii = tuple(float(r) for r in radii)
        self.output_dir = output_dir
        self.last_counts: dict[str, int] = {}

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'spacing' not in sample:
                raise KeyError('CephalometricMetric needs each sample\'s "spacing": use '
                               'PackCephalometricInputs (or add "spacing" to PackPoseInputs meta_keys)')
            gt = sample['gt_instances']
            visible = np.asarray(gt['keypoints_visible']).reshape(-1)
            gt_xy = np.asarray(gt['keypoints']).reshape(-1, 2)
            pred_xy = np.asarray(sample['pred_instances']['keypoints']).reshape(-1, 2)[:gt_xy.shape[0]]
            self.results.append({
                'img_id': sample.get('img_id'),
                'image': Path(sample.get('img_path', '')).name,
                'spacing': float(sample['spacing']),
                'pred': pred_xy.astype(np.float64),
                'gt': gt_xy.astype(np.float64),
                'visible': visible > 0,
            })

    def compute_metrics(self, results: list) -> dict[str, float]:
        results = sorted(results, key=lambda r: (isinstance(r['img_id'], str), r['img_id'], r['image']))
        errors = np.stack([radial_errors_mm(r['pred'], r['gt'], r['spacing']) for r in results])
        visible = np.stack([r['visible'] for r in results])
        metrics = summarize_errors(errors, visible, self.radii)
        self.last_counts = {'images': len(results), 'landmarks': int(visible.sum()),
                            'excluded_invisible': int((~visible).sum())}
        print_log('CephalometricMetric: {images} images, {landmarks} landmarks scored, {excluded_invisible} '
                  'excluded as invisible'.format(**self.last_counts), logger='current')
        for k, mre, median in unlearned_landmarks(errors, visible):
            print_log(f'CephalometricMetric: landmark {k + 1} has an MRE of {mre:.1f} mm, {mre / median:.0f}x the '
                      f'median landmark\'s {median:.2f} mm: its heatmap may not have been learned (see '
                      f'docs/accuracy_log.md, "unlearned landmarks")', logger='current', level=logging.WARNING)
        if self.output_dir:
            meta_names = (self.dataset_meta or {}).get('keypoint_id2name')
            names = [meta_names[k] for k in range(errors.shape[1])] if meta_names else \
                [f'landmark_{k + 1}' for k in range(errors.shape[1])]
            out = Path(self.output_dir)
            write_csv(per_landmark_rows(errors, visible, names, self.radii), out / 'per_landmark.csv')
            write_csv(per_image_rows(errors, visible, [r['img_id'] for r in results],
                                     [r['image'] for r in results], [r['spacing'] for r in results],
                                     self.radii), out / 'per_image.csv')
        return metrics

