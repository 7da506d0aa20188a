"""benchmarks.studies.analysis_agreement: the Test1 class agreement from annotations, a prediction JSON or a model,
and its section of RESULTS.md (which the harness's own writers must leave alone)."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_analysis import face
from test_predict import write_test_model

from benchmarks import results
from benchmarks.data import ISBI_TEST1_IMAGES, ISBI_TRAIN_IMAGES
from benchmarks.studies import analysis_agreement as agreement
from cldetection.analysis import A, B, MEASUREMENT_NAMES, analyse_landmarks
from cldetection.challenge_io import load_landmarks, prediction_document, write_json_atomic
from cldetection.errors import run_cli
from cldetection.landmarks import ISBI2015_LANDMARK_NAMES


def senior_and_junior(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks of Test1 image ``index`` (0-based): SNA/SNB vary over the classes; the junior is off by noise."""
    rng = np.random.default_rng(index)
    senior = face(sna=77.0 + index % 9, snb=73.0 + index % 8) + rng.normal(0, 2, (19, 2))
    return np.round(senior, 1), np.round(senior + rng.normal(0, 25, (19, 2)), 1)  # as written to the CSV


@pytest.fixture(scope='module')
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for ../shared/data: landmarks.csv (train images too, as read_isbi_annotations wants every
    row it reads complete) and small JPEGs of the Test1 images."""
    root = tmp_path_factory.mktemp('shared')
    folder = root / 'isbi2015'
    (folder / 'images').mkdir(parents=True)
    header = 'image,split,annotator,' + ','.join(f'{n}_x,{n}_y' for n in ISBI2015_LANDMARK_NAMES)
    lines = [header]
    rng = np.random.default_rng(0)
    for i, name in enumerate(ISBI_TEST1_IMAGES):
        for annotator, xy in zip(('senior', 'junior'), senior_and_junior(i)):
            lines.append(f'{name},test1,{annotator},' + ','.join(f'{v:.1f}' for v in xy.ravel()))
        cv2.imwrite(str(folder / 'images' / name), rng.integers(0, 255, (96, 80, 3), dtype=np.uint8))
    for name in ISBI_TRAIN_IMAGES[:2]:
        for annotator in ('senior', 'junior'):
            lines.append(f'{name},train,{annotator},' + ','.join('1.0' for _ in range(38)))
    (folder / 'landmarks.csv').write_text('\n'.join(lines) + '\n')
    return root


def run(argv: list) -> tuple[int, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exit_info:
        run_cli(agreement.main, [str(a) for a in argv])
    return exit_info.value.code, stdout.getvalue()


def expected_junior_counts() -> dict[str, tuple[int, int]]:
    counts = {name: 0 for name in MEASUREMENT_NAMES}
    for i in range(len(ISBI_TEST1_IMAGES)):
        senior, junior = (analyse_landmarks(xy) for xy in senior_and_junior(i))
        for name in MEASUREMENT_NAMES:
            counts[name] += senior[name].class_number == junior[name].class_number
    return {name: (c, len(ISBI_TEST1_IMAGES)) for name, c in counts.items()}


def section_rows(results_md: Path) -> dict[str, dict[str, str]]:
    return {r['Source']: r for r in agreement.read_section_rows(results_md.read_text().splitlines())}


def test_prediction_json_row_next_to_the_junior_row(shared: Path, tmp_path: Path) -> None:
    """A prediction equal to the senior agrees 100 %; one image with B moved forward loses that image's ANB."""
    points = {z: senior_and_junior(z - 1)[0] for z in range(1, 151)}
    points[7] = points[7].copy()
    before = analyse_landmarks(points[7])
    points[7][B - 1] = points[7][A - 1] + (60.0, 300.0)  # B well in front of A: ANB negative, Class III
    after = analyse_landmarks(points[7])
    assert before['ANB'].class_number != after['ANB'].class_number == 3
    pred = write_json_atomic(prediction_document(points), tmp_path / 'test1.json')
    results_md = tmp_path / 'RESULTS.md'
    code, stdout = run(['--shared-data', shared, '--results', results_md, '--prediction-json', pred])
    assert code == 0 and 'model: test1.json vs senior' in stdout
    rows = section_rows(results_md)
    assert list(rows) == [agreement.JUNIOR_LABEL, 'model: test1.json']
    model = rows['model: test1.json']
    assert model['ANB'] == f'{100 * 149 / 150:.1f}' and model['Images'] == '150'
    changed = {n for n in MEASUREMENT_NAMES if before[n].class_number != after[n].class_number}
    assert all(model[n] == '100.0' for n in MEASUREMENT_NAMES if n not in changed)
    junior = rows[agreement.JUNIOR_LABEL]
    for name, (agree, total) in expected_junior_counts().items():
        assert junior[name] == f'{100 * agree / total:.1f}'


def test_section_survives_the_harness_and_rows_are_replaced_by_label(shared: Path, tmp_path: Path) -> None:
    results_md = tmp_path / 'RESULTS.md'
    run_row = {c: 'x' for c in results.COLUMNS}
    results.append_rows(results_md, [run_row])
    perfect = write_json_atomic(prediction_document({z: senior_and_junior(z - 1)[0] for z in range(1, 151)}),
                                tmp_path / 'perfect.json')
    assert run(['--shared-data', shared, '--results', results_md, '--prediction-json', perfect,
                '--label', 'model A'])[0] == 0
    text = results_md.read_text()
    assert text.index(agreement.SECTION_START) < text.index(results.RUNS_HEADING)  # above the Runs table
    results.append_rows(results_md, [run_row])
    results.replace_summary(results_md, [results.SUMMARY_HEADING, '', 'summary'])
    assert len(results.read_rows(results_md)) == 2
    assert list(section_rows(results_md)) == [agreement.JUNIOR_LABEL, 'model A']
    # a second model is added, the same label again replaces its row
    assert run(['--shared-data', shared, '--results', results_md, '--prediction-json', perfect,
                '--label', 'model B'])[0] == 0
    worse = {z: senior_and_junior(z - 1)[1] for z in range(1, 151)}  # the junior's landmarks as a "model"
    worse_json = write_json_atomic(prediction_document(worse), tmp_path / 'worse.json')
    assert run(['--shared-data', shared, '--results', results_md, '--prediction-json', worse_json,
                '--label', 'model A'])[0] == 0
    rows = section_rows(results_md)
    assert list(rows) == [agreement.JUNIOR_LABEL, 'model A', 'model B']
    assert [rows['model A'][n] for n in MEASUREMENT_NAMES] == [rows[agreement.JUNIOR_LABEL][n] for n in MEASUREMENT_NAMES]
    assert rows['model B']['Mean'] == '100.0'
    assert results_md.read_text().count(agreement.SECTION_START) == 1 and 'summary' in results_md.read_text()


def test_model_path_predicts_the_test1_images_and_saves_the_json(shared: Path, tmp_path: Path) -> None:
    """An untrained tiny model through the LandmarkPredictor: the saved JSON holds its prediction of the JPEGs,
    and --limit prints without touching RESULTS.md."""
    from cldetection.predict import LandmarkPredictor

    config, checkpoint = write_test_model(tmp_path / 'model', num_landmarks=19)
    saved, results_md = tmp_path / 'pred.json', tmp_path / 'RESULTS.md'
    code, stdout = run(['--shared-data', shared, '--results', results_md, '--config', config, '--checkpoint',
                        checkpoint, '--device', 'cpu', '--limit', '3', '--save-json', saved])
    assert code == 0 and f'model: {config.stem} / {checkpoint.name} vs senior' in stdout and '/3)' in stdout
    assert not results_md.exists()
    images = [cv2.imread(str(shared / 'isbi2015' / 'images' / n))[:, :, ::-1] for n in ISBI_TEST1_IMAGES[:3]]
    direct = LandmarkPredictor(config, checkpoint, device='cpu').predict_images([np.ascontiguousarray(i) for i in images])
    written = load_landmarks(saved, require_spacing=False)
    assert written.slices == [1, 2, 3]
    for z in (1, 2, 3):
        np.testing.assert_allclose(written.as_array(z)[0], direct[z - 1], atol=1e-4)
    code, _ = run(['--shared-data', shared, '--config', config, '--checkpoint', checkpoint, '--device', 'cpu',
                   '--limit', '3', '--save-json', saved])
    assert code == 2  # the saved JSON is not replaced without --overwrite


@pytest.mark.parametrize('argv, message', [
    (['--config', 'c.py'], '--config and --checkpoint go together'),
    (['--prediction-json', 'p.json', '--config', 'c.py', '--checkpoint', 'k.pth'], 'not both'),
    (['--save-json', 'o.json'], '--save-json needs --config'),
    (['--limit', '0'], '--limit must be in 1..150'),
])
def test_bad_arguments_are_one_line_errors(argv: list, message: str, capsys: pytest.CaptureFixture) -> None:
    assert run(argv)[0] == 2
    assert message in capsys.readouterr().err


def test_prediction_json_that_is_not_of_the_test1_stack(shared: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    short = write_json_atomic(prediction_document({z: face() for z in range(1, 100)}), tmp_path / 'short.json')
    assert run(['--shared-data', shared, '--prediction-json', short, '--no-results'])[0] == 2
    assert 'has no points for slice 100' in capsys.readouterr().err
    few = write_json_atomic(prediction_document({z: face()[:10] for z in range(1, 151)}), tmp_path / 'few.json')
    assert run(['--shared-data', shared, '--prediction-json', few, '--no-results'])[0] == 2
    assert 'slice 1 lacks landmark(s) 11, 12' in capsys.readouterr().err


@pytest.mark.realdata
def test_junior_reference_on_the_real_test1(shared_data: Path) -> None:
    """The human reference committed to RESULTS.md, recomputed from landmarks.csv."""
    from benchmarks.data import read_isbi_annotations
    from cldetection.analysis import class_agreement

    annotations = read_isbi_annotations(shared_data / 'isbi2015' / 'landmarks.csv')
    senior, junior = (agreement.test1_analyses(annotations, a, ISBI_TEST1_IMAGES) for a in ('senior', 'junior'))
    counts = class_agreement(junior, senior)
    assert {n: c[0] for n, c in counts.items()} == {'ANB': 110, 'SNB': 117, 'SNA': 100, 'ODI': 120, 'APDI': 124,
                                                    'FHI': 120, 'FMA': 122, 'MW': 134}


@pytest.mark.realdata
def test_every_real_annotation_is_measurable(shared_data: Path) -> None:
    """All 300 ISBI images face right and give all eight measurements, for both annotators."""
    from benchmarks.data import read_isbi_annotations

    annotations = read_isbi_annotations(shared_data / 'isbi2015' / 'landmarks.csv')
    assert len(annotations) == 300
    for image in annotations.values():
        for xy in image.annotations.values():
            assert all(m.class_number is not None for m in analyse_landmarks(xy).values()), image.name
