"""The studies' own logic (``benchmarks/studies/``), on tiny data: label agreement, the class-agreement section of
RESULTS.md, pseudo-labels, label fusion, score against error, the cascade oracle (an untrained tiny cascade) and the
shape prior. The harness's tests are in ``test_benchmarks.py``.

No trained model needed; the tests on ``../shared/data`` skip without it. The studies themselves
(``python -m benchmarks.studies.X``) are not part of the tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CASCADE
from test_benchmarks import _coco, _fake_result, _tiny_isbi_csv
from test_train import make_tiny_coco, one_torch_thread  # noqa: F401

from benchmarks import data, results
from cldetection.challenge_io import load_landmarks, write_json_atomic
from cldetection.errors import InputError


# ------------------------------------------------------------------------------------ label agreement
def _tiny_shared_data(tmp_path: Path) -> Path:
    """``shared/`` with one ISBI image (senior (10k, 20k+1), junior (10k+3, 20k+5)) and a cl2023 ground truth
    that equals the senior except landmark 2, moved 6 px right, and holds 38 landmarks."""
    from cldetection.challenge_io import ground_truth_document

    shared = tmp_path / 'shared'
    (shared / 'isbi2015' / 'images').mkdir(parents=True)
    (shared / 'cl2023_subset').mkdir()
    _tiny_isbi_csv(shared / 'isbi2015' / 'landmarks.csv')
    (shared / 'isbi2015' / 'images' / '001.jpg').write_bytes(b'')
    (shared / 'cl2023_subset' / 'images.txt').write_text('../isbi2015/images/001.jpg\n')
    points = {k + 1: (10.0 * k, 20.0 * k + 1) for k in range(38)}
    points[2] = (16.0, 21.0)
    write_json_atomic(ground_truth_document({1: points}, {1: 0.1}), shared / 'cl2023_subset' / 'train-gt.json')
    return shared


def test_label_agreement_measures_cl2023_against_each_isbi_annotator(tmp_path: Path, capsys) -> None:
    from benchmarks.studies import label_agreement

    shared = _tiny_shared_data(tmp_path)
    distances, splits = label_agreement.label_distances(shared)
    assert splits == ['train']
    senior, junior, mean = (distances[r][0] for r in ('senior', 'junior', 'mean'))
    assert senior[0] == 0.0 and senior[1] == pytest.approx(0.6) and senior[2:].max() == 0.0
    assert junior[0] == pytest.approx(0.5)  # (3, 4) px
    assert mean[0] == pytest.approx(0.25)  # (1.5, 2) px
    assert label_agreement.main(['--shared-data', str(shared)]) == 0
    table = capsys.readouterr().out
    assert '| 1 sella | 0.00 | 0.50 | 0.25 | 100 |' in table and '| 2 nasion | 0.60 |' in table
    assert '| **all** | **0.032** |' in table  # 0.6 mm on one of 19 landmarks


def test_label_agreement_names_an_image_isbi_does_not_label(tmp_path: Path) -> None:
    from benchmarks.studies import label_agreement

    shared = _tiny_shared_data(tmp_path)
    (shared / 'isbi2015' / 'images' / '002.jpg').write_bytes(b'')
    (shared / 'cl2023_subset' / 'images.txt').write_text('../isbi2015/images/002.jpg\n')
    with pytest.raises(InputError, match=r'images\.txt.*002\.jpg is not an ISBI 2015 image'):
        label_agreement.label_distances(shared)


def test_label_agreement_on_the_real_data(shared_data: Path) -> None:
    """cl2023 took the ISBI senior annotator's points and re-annotated some: sella is the senior's on every image,
    and cl2023 lies closer to the senior than to the mean, and to the mean than to the junior."""
    from benchmarks.studies import label_agreement

    if not (shared_data / 'isbi2015' / 'landmarks.csv').is_file():
        pytest.skip(f'ISBI 2015 labels not found in {shared_data}')
    distances, splits = label_agreement.label_distances(shared_data)
    assert len(splits) == 193 and set(splits) == {'train', 'test1'}  # Test2 is not among them
    senior, junior, mean = (distances[r] for r in ('senior', 'junior', 'mean'))
    assert (senior[:, 0] < label_agreement.IDENTICAL_MM).all()
    assert senior.mean() < mean.mean() < junior.mean()


# ---------------------------------------------------------------------------------- analysis agreement
def test_a_section_the_module_wrote_at_its_former_path_is_replaced_in_place(tmp_path: Path) -> None:
    """RESULTS.md sections written as ``benchmarks.analysis_agreement`` (before the move to
    ``benchmarks/studies/``) keep their rows and get the new start marker, with no second section."""
    from benchmarks.results import format_row
    from benchmarks.studies import analysis_agreement as agreement

    results_md = tmp_path / 'RESULTS.md'
    old_start = '<!-- analysis-agreement: written by python -m benchmarks.analysis_agreement; edits are lost -->'
    row = dict({c: 'x' for c in agreement.COLUMNS}, Source='model A')
    table = [format_row(agreement.COLUMNS), format_row(['---'] * len(agreement.COLUMNS)),
             format_row([row[c] for c in agreement.COLUMNS])]
    results_md.write_text('\n'.join(['# R', old_start, *table, agreement.SECTION_END, 'after']) + '\n')
    sources = [r['Source'] for r in agreement.read_section_rows(results_md.read_text().splitlines())]
    assert sources == ['model A']
    agreement.update_results(results_md, [dict(row, Source='model B')])
    text = results_md.read_text()
    assert old_start not in text and text.count(agreement.SECTION_START) == 1 and text.endswith('after\n')
    assert [r['Source'] for r in agreement.read_section_rows(text.splitlines())] == ['model A', 'model B']


# ------------------------------------------------------------------------------------------ pseudo-labels
def _step2_train(folder: Path, ids: list[int]) -> Path:
    folder.mkdir(parents=True)
    document = _coco(ids)
    for img in document['images']:
        img['file_name'] = f'{img["id"]}.png'
    return write_json_atomic(document, folder / 'train.json')


def test_pseudo_label_file_moves_ids_away_from_any_slice_and_names_images_absolutely(tmp_path: Path) -> None:
    from benchmarks.studies import pseudo_labels

    step2 = _step2_train(tmp_path / 'step2', [1, 2])
    out = pseudo_labels.offset_training_file(step2, tmp_path / 'pseudo-train.json')
    document = json.loads(out.read_text())
    assert [img['id'] for img in document['images']] == [100_001, 100_002]
    assert [a['image_id'] for a in document['annotations']] == [100_001, 100_002]
    assert document['images'][0]['file_name'] == str((tmp_path / 'step2' / 'images' / '1.png').resolve())
    assert document['info']['label'] == 'pseudo'
    assert json.loads(step2.read_text())['images'][0]['id'] == 1  # step 2's file untouched
    second = pseudo_labels.offset_training_file(step2, tmp_path / 'round2.json', label='pseudo-r2')
    assert json.loads(second.read_text())['info']['label'] == 'pseudo-r2'  # a second round's rows keep apart


def test_extra_training_images_merge_with_the_split_and_label_the_run(tmp_path: Path) -> None:
    from benchmarks import run
    from benchmarks.studies import pseudo_labels

    write_json_atomic(_coco([1, 4]), tmp_path / 'train.json')
    extra = pseudo_labels.offset_training_file(_step2_train(tmp_path / 'step2', [1, 2, 3]), tmp_path / 'extra.json')
    described = run.read_extra_training_file(extra, test_roots=[tmp_path / 'fold0'])
    assert described['images'] == 3 and described['label'] == 'pseudo'
    merged = data.merge_training_annotations([tmp_path / 'train.json', extra], tmp_path / 'merged.json', 'train + x')
    assert data.image_ids(merged) == [1, 4, 100_001, 100_002, 100_003]
    result = _fake_result()
    result['budget_overrides']['extra_train'] = described
    assert results.budget_label(result).endswith(', +3 pseudo')


def test_senior_points_replace_only_the_named_landmarks_of_the_pseudo_labels(tmp_path: Path) -> None:
    """``--senior-landmarks``: the ISBI senior's points (10k, 20k + 1) for the named landmarks, the model's
    points and the scale for every other one; a number outside 1-19 is refused before anything runs."""
    from benchmarks.studies import pseudo_labels
    from cldetection.challenge_io import ground_truth_document

    csv_path = _tiny_isbi_csv(tmp_path / 'landmarks.csv')
    model = {k: (500.0 + k, 600.0 + k) for k in range(1, 39)}
    gt = write_json_atomic(ground_truth_document({1: model}, {1: 0.1}), tmp_path / 'pseudo-gt.json')
    out = pseudo_labels.with_senior_points(gt, tmp_path / 'mixed.json', [Path('/x/001.jpg')], csv_path, [1, 10])
    mixed = load_landmarks(out)
    assert mixed.points[1][1] == (0.0, 1.0) and mixed.points[1][10] == (90.0, 181.0)
    assert all(mixed.points[1][k] == model[k] for k in range(1, 39) if k not in (1, 10))
    assert mixed.spacing == {1: 0.1} and load_landmarks(gt).points[1] == model  # the model's file untouched
    assert pseudo_labels.check_senior_landmarks([10, 1, 10]) == [1, 10]
    with pytest.raises(InputError, match=r'--senior-landmarks: 20 is not an ISBI 2015 landmark number \(1-19\)'):
        pseudo_labels.check_senior_landmarks([1, 20])
    with pytest.raises(InputError, match='--senior-landmarks: 0 is not'):
        pseudo_labels.make_pseudo_labels(tmp_path / 'absent.py', tmp_path / 'absent.pth', tmp_path / 'out',
                                         senior_landmarks=[0])
    assert not (tmp_path / 'out').exists()


def test_senior_gate_takes_the_senior_point_only_where_the_model_agrees_with_it(tmp_path: Path) -> None:
    """``--senior-gate-mm``: landmark by landmark, the senior's point where the model lies within the gate
    (distances in mm through the scale), the model's elsewhere; landmarks 20-38 always the model's."""
    from benchmarks.studies import pseudo_labels
    from cldetection.challenge_io import ground_truth_document

    senior = np.array([[10.0 * k, 20.0 * k + 1] for k in range(19)])  # what _tiny_isbi_csv writes
    model = senior.copy()
    model[0] += (5.0, 0.0)  # 0.5 mm at 0.1 mm/px: inside a 1 mm gate
    model[1] += (0.0, 12.0)  # 1.2 mm: outside
    model[2] += (30.0, 40.0)  # 5 mm
    fused = pseudo_labels.senior_gated_points(model, senior, 1.0, 0.1)
    assert np.array_equal(fused[0], senior[0]) and np.array_equal(fused[1], model[1])
    assert np.array_equal(fused[2], model[2]) and np.array_equal(fused[3:], senior[3:])
    assert np.array_equal(pseudo_labels.senior_gated_points(model, senior, 1.0, 0.05)[1], senior[1])  # 12 px = 0.6 mm

    csv_path = _tiny_isbi_csv(tmp_path / 'landmarks.csv')
    points = {k: (float(model[k - 1, 0]), float(model[k - 1, 1])) for k in range(1, 20)}
    points.update({k: (500.0 + k, 600.0 + k) for k in range(20, 39)})
    gt = write_json_atomic(ground_truth_document({1: points}, {1: 0.1}), tmp_path / 'pseudo-gt.json')
    out, taken = pseudo_labels.with_gated_senior_points(gt, tmp_path / 'gated.json', [Path('/x/001.jpg')],
                                                        csv_path, 1.0)
    gated = load_landmarks(out)
    assert gated.points[1][1] == (0.0, 1.0) and gated.points[1][2] == points[2] and gated.points[1][3] == points[3]
    assert all(gated.points[1][k] == points[k] for k in range(20, 39))
    assert taken == pytest.approx(17 / 19) and load_landmarks(gt).points[1] == points  # the model's file untouched
    for kwargs, message in (({'senior_gate_mm': 0.0}, r'--senior-gate-mm: must be a distance > 0 mm, got 0\.0'),
                            ({'senior_gate_mm': 1.0, 'senior_landmarks': [1]}, '--senior-gate-mm: choose either')):
        with pytest.raises(InputError, match=message):
            pseudo_labels.make_pseudo_labels(tmp_path / 'absent.py', tmp_path / 'absent.pth', tmp_path / 'out',
                                             **kwargs)
    assert not (tmp_path / 'out').exists()


def test_pseudo_labels_take_only_isbi_images_outside_the_cl2023_subset(tmp_path: Path) -> None:
    from benchmarks.studies import pseudo_labels

    shared = _tiny_shared_data(tmp_path)  # cl2023 holds 001.jpg
    folder = shared / 'isbi2015' / 'images'
    for i in range(2, 301):
        (folder / f'{i:03d}.jpg').write_bytes(b'')
    found = pseudo_labels.unlabelled_isbi_images(shared)
    assert [p.name for p in found] == [f'{i:03d}.jpg' for i in range(2, 301)]
    (folder / '300.jpg').unlink()
    with pytest.raises(InputError, match=r'300\.jpg: file not found'):
        pseudo_labels.unlabelled_isbi_images(shared)


def test_pseudo_label_images_on_the_real_data(shared_data: Path) -> None:
    """107 ISBI images 001-300 lie outside the 193-image cl2023 subset; Test2 (301-400) is never among them."""
    from benchmarks.studies import pseudo_labels

    if not (shared_data / 'cl2023_subset' / 'images.txt').is_file():
        pytest.skip(f'CL-Detection 2023 subset not found in {shared_data}')
    found = pseudo_labels.unlabelled_isbi_images(shared_data)
    assert len(found) == 107 and all(1 <= int(p.stem) <= 300 for p in found)
    assert not {p.name for p in found} & {p.name for p in data.cl2023_image_paths(shared_data / 'cl2023_subset')}


def test_pseudo_labels_refuse_a_used_output_folder(tmp_path: Path) -> None:
    from benchmarks.studies import pseudo_labels

    (tmp_path / 'config.py').write_text('')
    (tmp_path / 'model.pth').write_bytes(b'')
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'pseudo-train.json').write_text('{}')
    with pytest.raises(InputError, match=r'out: is not empty'):
        pseudo_labels.make_pseudo_labels(tmp_path / 'config.py', tmp_path / 'model.pth', tmp_path / 'out')
    assert (tmp_path / 'out' / 'pseudo-train.json').read_text() == '{}'


def test_pseudo_labels_from_a_model_become_a_training_file(tmp_path: Path, repo_root: Path, capsys) -> None:
    """End to end on tiny images: the two ISBI images outside the cl2023 list are stacked, predicted by a (here
    untrained) 38-landmark cascade, written as a ground truth, put through step 2 and offset; the labels in the
    training file are the model's predictions."""
    import cv2

    from benchmarks.studies import pseudo_labels
    from cldetection.config_utils import load_config, set_num_landmarks
    from cldetection.checkpoints import save_untrained_checkpoint

    shared = tmp_path / 'shared'
    folder = shared / 'isbi2015' / 'images'
    folder.mkdir(parents=True)
    (shared / 'cl2023_subset').mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 301):
        cv2.imwrite(str(folder / f'{i:03d}.jpg'), rng.integers(0, 255, (120, 96), dtype=np.uint8))
    unlabelled = ('005.jpg', '250.jpg')
    (shared / 'cl2023_subset' / 'images.txt').write_text(
        ''.join(f'../isbi2015/images/{i:03d}.jpg\n' for i in range(1, 301) if f'{i:03d}.jpg' not in unlabelled))
    rows = _tiny_isbi_csv(tmp_path / 'one.csv').read_text().splitlines()
    (shared / 'isbi2015' / 'landmarks.csv').write_text('\n'.join(
        [rows[0]] + [row.replace('001.jpg', name) for name in unlabelled for row in rows[1:]]) + '\n')
    cfg = load_config(repo_root / 'cldetection_configs' / 'tiny_cascade_cpu.py')
    set_num_landmarks(cfg, 38)
    cfg.dump(str(tmp_path / 'tiny38.py'))
    checkpoint = save_untrained_checkpoint(tmp_path / 'tiny38.py', tmp_path / 'untrained.pth')

    out = pseudo_labels.make_pseudo_labels(tmp_path / 'tiny38.py', checkpoint, tmp_path / 'pseudo',
                                           data_dir=tmp_path / 'data', shared_data=shared)
    assert 'landmarks 1-19 against the ISBI senior annotator' in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert [img['id'] for img in document['images']] == [100_001, 100_002]
    assert all(Path(img['file_name']).is_file() for img in document['images'])
    predicted = load_landmarks(tmp_path / 'pseudo' / 'prediction.json', require_spacing=False)
    for ann in document['annotations']:
        keypoints = np.asarray(ann['keypoints'], dtype=np.float64).reshape(-1, 3)
        z = ann['image_id'] - 100_000
        expected = np.array([predicted.points[z][k] for k in range(1, 39)])
        assert keypoints.shape == (38, 3) and np.allclose(keypoints[:, :2], expected, atol=1e-3)
    assert (tmp_path / 'data' / 'cl2023' / 'extra_stack.mha').is_file()  # cached for the next fold's labels


# ------------------------------------------------------------------------------------------ label fusion
def test_label_fusion_scores_each_labelling_against_the_truth() -> None:
    """``benchmarks.studies.label_fusion``: the model's, the senior's, the seven agreeing landmarks' and the gated
    labels, each scored against the truth in mm; landmarks 20-38 are the model's in every labelling."""
    from benchmarks.studies import label_fusion

    truth = np.zeros((1, 38, 2))
    model = truth.copy()
    model[0, :, 0] = 10.0  # 1 mm off everywhere (0.1 mm/px)
    senior = truth[:, :19].copy()
    senior[0, 1, 1] = 30.0  # the senior's landmark 2 is 3 mm off; the rest exact (a kept click)
    errors = label_fusion.labelling_errors(truth, model, senior, np.array([0.1]), gates=[0.5, 1.5, 5.0])
    assert set(errors) == {'model', 'senior', 'senior 7', 'gate 0.5 mm', 'gate 1.5 mm', 'gate 5 mm'}
    assert np.allclose(errors['model'], 1.0)
    expected_senior = np.r_[0.0, 3.0, np.zeros(17), np.ones(19)]
    assert np.allclose(errors['senior'][0], expected_senior)
    seven = np.ones(38)
    seven[np.array(label_fusion.AGREEING_LANDMARKS) - 1] = 0.0
    assert np.allclose(errors['senior 7'][0], seven)
    assert np.allclose(errors['gate 0.5 mm'], 1.0)  # the model lies 1 mm from every senior point: none taken
    # 1.5 mm: every senior point but landmark 2 (the model is 1 mm from the truth, 3.2 mm from that click)
    assert np.allclose(errors['gate 1.5 mm'][0], np.r_[0.0, 1.0, np.zeros(17), np.ones(19)])
    assert np.allclose(errors['gate 5 mm'][0], expected_senior)
    table = label_fusion.format_tables(errors)
    assert table[2] == '| model | 1.000 | 1.000 | 100.00 |' and any('gate 1.5 mm mm |' in line for line in table)


def test_label_fusion_refuses_missing_files_and_gates_that_are_not_distances(tmp_path: Path) -> None:
    from benchmarks.studies import label_fusion

    args = dict(fold=0, splits=['test'], out_dir=None, data_dir=tmp_path / 'data', shared_data=tmp_path / 'shared')
    with pytest.raises(InputError, match=r'absent\.py: file not found'):
        label_fusion.label_fusion(tmp_path / 'absent.py', tmp_path / 'absent.pth', gates=[1.0], **args)
    (tmp_path / 'config.py').write_text('')
    (tmp_path / 'model.pth').write_bytes(b'')
    with pytest.raises(InputError, match=r'--gates: must be distances > 0 mm, got -1\.0'):
        label_fusion.label_fusion(tmp_path / 'config.py', tmp_path / 'model.pth', gates=[2.0, -1.0], **args)
    assert not (tmp_path / 'data').exists()  # refused before any data is built


# ------------------------------------------------------------------------------------- score and error
def test_score_error_table_finds_errors_where_scores_are_low() -> None:
    """Per landmark, the lowest-scored fraction of images against the rest; rho is -1 when every low score is a
    larger error, and near 0 for unrelated scores."""
    from benchmarks.studies.score_error import score_error_table, spearman

    rng = np.random.default_rng(0)
    errors = np.minimum(rng.gamma(2.0, 0.8, size=(40, 5)), 3.9)
    errors[0, :] = 9.0  # one image with large errors everywhere
    informative = -errors + 1e-3 * rng.random(errors.shape)
    assert spearman(informative, errors) == pytest.approx(-1.0, abs=1e-3)
    table = score_error_table(informative, errors, fractions=(0.1,))
    low = np.sort(errors, axis=0)[-4:]  # the 4 (10 % of 40) largest per landmark
    assert table[0]['low_mre'] == pytest.approx(low.mean())
    assert table[0]['rest_mre'] == pytest.approx(np.sort(errors, axis=0)[:-4].mean())
    assert table[0]['large_in_low'] == pytest.approx(1.0)  # only image 0's errors are over 4 mm
    unrelated = rng.random(errors.shape)
    assert abs(spearman(unrelated, errors)) < 0.15


# ---------------------------------------------------------------------------------------- cascade oracle
@pytest.mark.usefixtures('one_torch_thread')
def test_cascade_oracle_refines_from_the_centres_it_is_given_through_the_public_api(tmp_path: Path) -> None:
    """``benchmarks.studies.cascade_oracle`` on an untrained tiny cascade: with no local pass the prediction is the
    (jittered) truth it was centred on; its per-point cascade column is step 4's MRE, its global column the model's
    prediction with the local stage switched off."""
    from benchmarks.studies.cascade_oracle import per_point_errors, run_test
    from cldetection.checkpoints import save_untrained_checkpoint

    coco = make_tiny_coco(tmp_path)
    checkpoint = save_untrained_checkpoint(TINY_CASCADE, tmp_path / 'untrained.pth')
    test = [TINY_CASCADE, checkpoint, str(coco), 'test']
    out = tmp_path / 'out'  # one folder for every runner of the process (see cascade_test_runner)
    assert run_test(*test, 0, 0.0, out)['MRE'] == 0.0  # centres = the truth, nothing refines them
    assert 1.0 < run_test(*test, 0, 2.5, out)['MRE'] < 6.0  # Gaussian centres, SD 2.5 mm per axis: mean 3.1 mm
    untouched = per_point_errors(*test, 0, out)
    assert untouched.shape[1] == 4 and set(untouched[:, 0]) == set(range(1, 39))
    np.testing.assert_array_equal(untouched[:, 2], untouched[:, 1])  # no local pass: cascade = global stage
    assert not untouched[:, 3].any()
    refined = per_point_errors(*test, 1, out)
    np.testing.assert_array_equal(refined[:, 1], untouched[:, 1])
    assert refined[:, 2].mean() == pytest.approx(run_test(*test, 1, None, out)['MRE'], rel=1e-5)


# ------------------------------------------------------------------------------------------ shape prior
def test_shape_prior_recovers_a_landmark_the_others_determine_and_bounds_blending(tmp_path: Path) -> None:
    """Landmark 0 is the midpoint of landmarks 1 and 2 (plus 0.05 mm noise): the prior predicts it from them
    to ~0.05 mm; blended with a model that errs by 2 mm there, the oracle blend beats both."""
    from benchmarks.studies.shape_prior import (blend_report, cross_validated_error, fit_conditional_landmark,
                                        labelled_shapes, shape_prior_estimates)

    rng = np.random.default_rng(0)
    others = rng.normal([[50, 60], [90, 80], [70, 120]], 5, size=(80, 3, 2))
    shapes = np.concatenate([(others[:, :2].mean(1) + rng.normal(0, 0.05, (80, 2)))[:, None], others], axis=1)
    predicted = fit_conditional_landmark(shapes[:60], 0, alpha=1.0)(shapes[60:])
    assert np.linalg.norm(predicted - shapes[60:, 0], axis=1).mean() < 0.15
    assert cross_validated_error(shapes, 1.0) < cross_validated_error(shapes, 1e6)  # over-regularised: the mean
    truth = shapes[60:]
    estimates = truth.copy()
    estimates[:, 0] += rng.normal(0, 2.0, (20, 2))  # the model misses landmark 0 only
    report = blend_report(estimates, shape_prior_estimates(shapes[:60], estimates, 1.0), truth)
    assert report['oracle per-landmark blend'] < min(report['model'], report['prior'])
    # the COCO reader: pixels times each image's spacing
    coco = {'images': [{'id': 1, 'spacing': 0.1}, {'id': 2, 'spacing': 0.2}],
            'annotations': [{'image_id': i, 'keypoints': [10, 20, 2, 30, 40, 2]} for i in (1, 2)]}
    (tmp_path / 'train.json').write_text(json.dumps(coco))
    np.testing.assert_allclose(labelled_shapes([tmp_path / 'train.json']),
                               [[[1, 2], [3, 4]], [[2, 4], [6, 8]]])
