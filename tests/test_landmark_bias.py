"""benchmarks.studies.landmark_bias: systematic per-landmark offsets (the model mode runs in test_cascade.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import data
from benchmarks.studies import landmark_bias


def test_offset_table_separates_a_constant_offset_from_the_scatter() -> None:
    rng = np.random.default_rng(0)
    scatter = rng.normal(0.0, 1.0, (400, 2, 2))
    scatter -= scatter.mean(axis=0)  # exactly zero-mean scatter
    errors = scatter + np.array([[3.0, -4.0], [0.0, 0.0]])  # landmark 1: a 5 mm offset; landmark 2: none
    table = landmark_bias.offset_table(errors)
    np.testing.assert_allclose(table[:, :2], [[3.0, -4.0], [0.0, 0.0]], atol=1e-12)
    centred = np.linalg.norm(scatter, axis=2).mean(axis=0)
    np.testing.assert_allclose(table[:, 3], centred)
    assert table[0, 2] > 4.5 > table[0, 3] and table[1, 2] == pytest.approx(table[1, 3])


def test_error_spread_finds_errors_along_one_line() -> None:
    """Landmark 1 errs along the diagonal (SD 3 mm) and hardly across it (0.5 mm); landmark 2 alike in all
    directions: the major / minor SDs say so, whatever the mean offset."""
    rng = np.random.default_rng(1)
    along, across = rng.normal(0.0, 3.0, 20000), rng.normal(0.0, 0.5, 20000)
    axis, normal = np.array([1.0, 1.0]) / np.sqrt(2), np.array([1.0, -1.0]) / np.sqrt(2)
    line = along[:, None] * axis + across[:, None] * normal + np.array([2.0, -1.0])
    round_ = rng.normal(0.0, 1.0, (20000, 2))
    spread = landmark_bias.error_spread(np.stack([line, round_], axis=1))
    np.testing.assert_allclose(spread, [[3.0, 0.5], [1.0, 1.0]], rtol=0.03)


def _csv(path: Path) -> Path:
    """Two images per split; the senior moves landmark 1 by +2 px in x from train to test1, the junior not."""
    header = 'image,split,annotator,' + ','.join(f'l{k}_x,l{k}_y' for k in range(data.ISBI_NUM_LANDMARKS))
    lines = [header]
    for image, split, shift in (('001.jpg', 'train', 0), ('002.jpg', 'train', 0),
                                ('151.jpg', 'test1', 20), ('152.jpg', 'test1', 20)):
        junior = np.arange(2 * data.ISBI_NUM_LANDMARKS, dtype=float) * 10
        senior = junior + 5.0  # the same +0.5 mm in x and y everywhere ...
        senior[2] += shift  # ... and landmark 2's x moves 2 mm in test1
        for annotator, values in (('senior', senior), ('junior', junior)):
            lines.append(f'{image},{split},{annotator},' + ','.join(f'{v:g}' for v in values))
    path.write_text('\n'.join(lines) + '\n')
    return path


def test_annotator_offsets_per_split_and_the_change(tmp_path: Path, capsys) -> None:
    offsets = landmark_bias.annotator_offsets(_csv(tmp_path / 'landmarks.csv'))
    assert sorted(offsets) == ['test1', 'train'] and offsets['train'].shape == (2, 19, 2)
    np.testing.assert_allclose(offsets['train'], 0.5)
    np.testing.assert_allclose(offsets['test1'][:, 1], [[2.5, 0.5]] * 2)
    assert landmark_bias.main(['annotators', '--landmarks-csv', str(tmp_path / 'landmarks.csv')]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith('2 nasion'))
    # test1 - train for landmark 2; every offset equals its split's mean: no spread about it
    assert row.rstrip().endswith('2.00   0.00 (2.00 mm) |  0.00  0.00')


def test_annotators_mode_names_a_missing_csv(tmp_path: Path) -> None:
    from cldetection.errors import InputError

    with pytest.raises(InputError, match='not found'):
        landmark_bias.main(['annotators', '--landmarks-csv', str(tmp_path / 'nope.csv')])
