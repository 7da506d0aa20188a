"""benchmarks.studies.learning_curve: the power-law fit over runs on nested training subsets, and its readings."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.studies import learning_curve
from cldetection.errors import InputError


def _run(folder: Path, images: int, mre: float, sdr2: float, seed: int = 0, fold: int = 1) -> Path:
    folder.mkdir(parents=True)
    result = {'protocol': 'cl2023', 'split': f'fold {fold} of 5', 'config': 'cldetection_configs/cascade.py',
              'seed': seed, 'data': {'train_images': images}, 'primary_ground_truth': 'official',
              'metrics': {'official': {'MRE': mre, 'SDR 2.0mm': sdr2}}}
    (folder / 'result.json').write_text(json.dumps(result))
    return folder


def test_an_exact_power_law_is_recovered_and_solved_for_the_target(tmp_path: Path) -> None:
    """MRE = 4 N^-0.2 and 100 - SDR = 200 N^-0.4 on three sizes; two seeds at the largest are averaged."""
    dirs = [_run(tmp_path / f'n{n}', n, 4 * n ** -0.2, 100 - 200 * n ** -0.4) for n in (40, 80)]
    dirs += [_run(tmp_path / f'n160s{s}', 160, 4 * 160 ** -0.2 + d, 100 - 200 * 160 ** -0.4)
             for s, d in ((0, 0.01), (1, -0.01))]
    dirs.append(_run(tmp_path / 'fold0', 160, 1.7, 73.0, fold=0))
    points = [learning_curve.read_point(d) for d in dirs]
    fold0, fold1 = learning_curve.summarize(points, [450], target_mre=1.5, target_sdr=75.0)
    assert fold0['sizes'] == [160] and 'mre_fit' not in fold0  # one size: no fit, still listed
    assert fold1['sizes'] == [40, 80, 160] and fold1['runs'] == [1, 1, 2]
    assert fold1['mre_fit']['a'] == pytest.approx(4.0, rel=1e-6) and fold1['mre_fit']['b'] == pytest.approx(0.2)
    assert fold1['sdr2_fit']['d'] == pytest.approx(0.4) and fold1['mre_fit']['rms_log_residual'] < 1e-9
    assert fold1['at'][450]['mre'] == pytest.approx(4 * 450 ** -0.2)
    assert fold1['images_for_target_mre'] == pytest.approx((4 / 1.5) ** 5)  # 4 N^-0.2 = 1.5
    assert fold1['images_for_target_sdr2'] == pytest.approx((200 / 25) ** 2.5)
    assert fold1['step_exponents'] == pytest.approx([0.2, 0.2], abs=2e-3)  # the seed pair's mean is off by 1e-5
    assert fold1['at'][450]['mre_last_step'] == pytest.approx(4 * 450 ** -0.2, rel=1e-3)
    text = learning_curve.format_summary(fold1, 1.5, 75.0)
    assert 'MRE = 4.000 * N^-0.200' in text and 'images for MRE <= 1.5 mm: 135 (last step' in text


def test_a_flattening_curve_reads_less_gain_off_its_last_step() -> None:
    points = [{'group': ('cl2023', 'fold 1 of 5', 'c'), 'images': n, 'mre': m, 'sdr2': 70.0}
              for n, m in ((40, 2.08), (80, 1.87), (160, 1.76))]
    (curve,) = learning_curve.summarize(points, [450], 1.5, 75.0)
    first, last = curve['step_exponents']
    assert first > last > 0 and curve['at'][450]['mre_last_step'] > curve['at'][450]['mre']
    assert curve['images_for_target_mre_last_step'] > curve['images_for_target_mre']


def test_a_curve_that_does_not_fall_never_reaches_the_target() -> None:
    a, b, _ = learning_curve.fit_power_law([40, 80], [2.0, 2.1])
    assert b < 0 and math.isinf(learning_curve.images_for(a, b, 1.5))
    with pytest.raises(ValueError, match='at least two training-set sizes'):
        learning_curve.fit_power_law([40, 40], [2.0, 2.1])


def test_a_missing_or_foreign_result_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r'result\.json.*file not found'):
        learning_curve.read_point(tmp_path)
    (tmp_path / 'result.json').write_text('{"protocol": "cl2023"}')
    with pytest.raises(InputError, match=r'result\.json.*is not a benchmarks.run result'):
        learning_curve.read_point(tmp_path)


def test_the_command_line_prints_the_fit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dirs = [_run(tmp_path / f'n{n}', n, 4 * n ** -0.2, 100 - 200 * n ** -0.4) for n in (40, 160)]
    assert learning_curve.main([str(d) for d in dirs] + ['--at-images', '300', '--json', str(tmp_path / 's.json')]) == 0
    out = capsys.readouterr().out
    assert 'read at 300 images: MRE' in out and json.loads((tmp_path / 's.json').read_text())[0]['sizes'] == [40, 160]


def test_one_recipe_under_two_config_names_is_one_curve_on_request(tmp_path: Path) -> None:
    small = learning_curve.read_point(_run(tmp_path / 'small', 40, 2.0, 60.0))
    renamed = learning_curve.read_point(_run(tmp_path / 'renamed', 160, 1.7, 70.0))
    renamed['group'] = renamed['group'][:2] + ('cascade_ablation',)
    assert len(learning_curve.summarize([small, renamed], [450], 1.5, 75.0)) == 2
    (merged,) = learning_curve.summarize([small, renamed], [450], 1.5, 75.0, ignore_config=True)
    assert merged['sizes'] == [40, 160] and merged['config'] == 'cascade + cascade_ablation'
