"""Step 6 outside Docker: process.py on the grand-challenge folder layout, bad input, output comparison, staging,
and static checks of the Dockerfile and shell scripts (Docker itself cannot run in CI)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cldetection.challenge_io import load_landmarks, prediction_document, write_json_atomic, write_stack
from cldetection.errors import run_cli
from cldetection.grand_challenge import (INPUT_SUBDIR, OUTPUT_NAME, compare_predictions, main, process_main,
                                         prediction_schema_problems, run_algorithm, stage_model)
from cldetection.predict import predict_stack_to_json
from test_predict import assert_one_line_error, synthetic, test_model  # noqa: F401  (shared fixtures)

REPO = Path(__file__).resolve().parents[1]
STEP6 = REPO / 'step6_docker_and_upload'


def input_folder(root: Path, *stacks: Path) -> Path:
    """``root/images/lateral-dental-x-rays/`` holding copies of ``stacks``; returns ``root``."""
    folder = root / INPUT_SUBDIR
    folder.mkdir(parents=True)
    for stack in stacks:
        shutil.copyfile(stack, folder / stack.name)
    return root


def test_process_py_runs_outside_docker_and_matches_step5(test_model, synthetic, tmp_path):
    """The real entry point as a script, with overridden folders, gives exactly step 5's prediction."""
    stack, _ = synthetic
    inputs = input_folder(tmp_path / 'input', stack)
    result = subprocess.run([sys.executable, str(STEP6 / 'process.py'), '--input-dir', str(inputs),
                             '--output-dir', str(tmp_path / 'output'), '--config', str(test_model[0]),
                             '--weights', str(test_model[1]), '--device', 'cpu', '--no-progress'],
                            capture_output=True, text=True, timeout=300,
                            # a stale editable install can resolve cldetection as a namespace package from
                            # outside the repository; the repository on the path makes the run independent of it
                            env={**os.environ, 'PYTHONPATH': str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    output = tmp_path / 'output' / OUTPUT_NAME
    assert prediction_schema_problems(json.loads(output.read_text())) == []
    predict_stack_to_json(*test_model, stack, tmp_path / 'step5.json', device='cpu', progress=False)
    comparison = compare_predictions(output, tmp_path / 'step5.json', tolerance_px=1e-6)
    assert comparison.ok, comparison.problems
    assert comparison.num_points == 3 * 38 and comparison.max_distance_px == 0.0


def test_several_stacks_are_numbered_on(test_model, tmp_path):
    image = np.full((300, 240), 100, np.uint8)
    image[50:120, 60:200] = 220
    first = write_stack([image.T.copy()], tmp_path / 'a.mha', 1)
    second = write_stack([image, image[::-1].copy()], tmp_path / 'b.mha', 2)
    inputs = input_folder(tmp_path / 'input', second, first)
    output = run_algorithm(inputs, tmp_path / 'out', *test_model, device='cpu', progress=False)
    predicted = load_landmarks(output, require_spacing=False)
    assert predicted.slices == [1, 2, 3]  # a.mha (1 slice) first, then b.mha (2 slices)
    predict_stack_to_json(*test_model, second, tmp_path / 'alone.json', device='cpu', progress=False)
    alone = load_landmarks(tmp_path / 'alone.json', require_spacing=False)
    assert predicted.points[2] == alone.points[1] and predicted.points[3] == alone.points[2]
    assert predicted.points[1] != alone.points[1]


@pytest.mark.parametrize('case, message', [
    ('missing_input', 'input folder not found'),
    ('no_subfolder', 'no such folder'),
    ('empty_folder', 'folder is empty'),
    ('no_mha', 'no .mha stack'),
    ('float_stack', 'wrong pixel type'),
    ('truncated_stack', 'truncated'),
    ('missing_weights', 'weights file not found'),
    ('missing_config', 'config file not found'),
    ('output_exists', 'already exists'),
])
def test_bad_input_is_one_line_error_and_no_output(case, message, test_model, synthetic, tmp_path, capsys):
    stack, _ = synthetic
    config, weights = test_model
    inputs, outputs = tmp_path / 'input', tmp_path / 'output'
    if case == 'no_subfolder':
        inputs.mkdir()
    elif case == 'empty_folder':
        (inputs / INPUT_SUBDIR).mkdir(parents=True)
    elif case == 'no_mha':
        (inputs / INPUT_SUBDIR).mkdir(parents=True)
        (inputs / INPUT_SUBDIR / 'stack.nii.gz').write_bytes(b'x')
    elif case == 'float_stack':
        import SimpleITK as sitk
        (inputs / INPUT_SUBDIR).mkdir(parents=True)
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((1, 30, 40, 3), np.float32), isVector=True),
                        str(inputs / INPUT_SUBDIR / 'float.mha'))
    elif case == 'truncated_stack':
        (inputs / INPUT_SUBDIR).mkdir(parents=True)
        (inputs / INPUT_SUBDIR / 'cut.mha').write_bytes(stack.read_bytes()[:5_000_000])
    elif case != 'missing_input':
        input_folder(inputs, stack)
    if case == 'missing_weights':
        weights = tmp_path / 'nope.pth'
    elif case == 'missing_config':
        config = tmp_path / 'nope.py'
    elif case == 'output_exists':
        outputs.mkdir()
        (outputs / OUTPUT_NAME).write_text('earlier result')
    with pytest.raises(SystemExit) as exit_info:
        run_cli(process_main, ['--input-dir', str(inputs), '--output-dir', str(outputs), '--config', str(config),
                               '--weights', str(weights), '--device', 'cpu', '--no-progress'])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, message)
    if case == 'output_exists':
        assert (outputs / OUTPUT_NAME).read_text() == 'earlier result'
    else:
        assert not (outputs / OUTPUT_NAME).exists()


# --------------------------------------------------------------------------------------- comparison
def _prediction(tmp_path: Path, name: str, points: dict) -> Path:
    return write_json_atomic(prediction_document(points), tmp_path / name)


def test_compare_predictions(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base = {z: rng.uniform(0, 2000, (38, 2)) for z in (1, 2)}
    expected = _prediction(tmp_path, 'expected.json', base)
    nudged = _prediction(tmp_path, 'nudged.json', {z: xy + 1.0 for z, xy in base.items()})
    moved = {z: xy.copy() for z, xy in base.items()}
    moved[2][6] += (30.0, 40.0)
    far = _prediction(tmp_path, 'far.json', moved)
    short = _prediction(tmp_path, 'short.json', {1: base[1]})

    result = compare_predictions(nudged, expected, tolerance_px=1.5)
    assert result.ok and result.num_points == 76 and result.max_distance_px == pytest.approx(2 ** 0.5)
    result = compare_predictions(far, expected, tolerance_px=1.5)
    assert not result.ok and 'slice 2 landmark 7: 50.00 px' in result.problems[0]
    assert not compare_predictions(short, expected).ok
    assert main(['compare', str(nudged), str(expected), '--tolerance', '1.5']) == 0
    assert main(['compare', str(far), str(expected)]) == 1
    assert 'slice 2 landmark 7' in capsys.readouterr().out


@pytest.mark.parametrize('mutate, problem', [
    (lambda d: d.update(name='Landmarks'), '"name"'),
    (lambda d: d.pop('version'), '"version"'),
    (lambda d: d['points'][0]['point'].__setitem__(0, 12), 'not [x float'),
    (lambda d: d['points'][0]['point'].__setitem__(2, 1.0), 'not [x float'),
    (lambda d: d['points'][0].update(name=1), 'not a landmark number'),
    (lambda d: d['points'].reverse(), 'not ordered'),
    (lambda d: d['points'].pop(), 'landmarks 1..K'),
    (lambda d: d['points'][0].update(scale='0.1'), 'exactly "name" and "point"'),
])
def test_schema_check_catches(mutate, problem):
    document = prediction_document({1: np.ones((3, 2)), 2: np.ones((3, 2))})
    assert prediction_schema_problems(document) == []
    mutate(document)
    problems = prediction_schema_problems(document)
    assert problems and any(problem in p for p in problems), problems


# ----------------------------------------------------------------------------------------- staging
def test_stage_writes_a_self_contained_model(test_model, tmp_path, capsys):
    config, weights = test_model
    child = tmp_path / 'src' / 'child.py'
    child.parent.mkdir()
    shutil.copyfile(config, tmp_path / 'src' / 'parent.py')
    child.write_text("_base_ = './parent.py'\n")  # inherits everything: the staged copy must not
    out = tmp_path / 'staged'
    assert main(['stage', '--config', str(child), '--weights', str(weights), '--out', str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['config.py', 'weights.pth']
    assert '_base_' not in (out / 'config.py').read_text()
    shutil.rmtree(tmp_path / 'src')  # the staged config must load without its parent
    from cldetection.predict import LandmarkPredictor
    assert LandmarkPredictor(out / 'config.py', out / 'weights.pth', device='cpu').num_landmarks == 38
    from cldetection.errors import InputError
    with pytest.raises(InputError, match='already exists'):
        stage_model(out / 'config.py', out / 'weights.pth', out)


# ---------------------------------------------------------------------------------- static checks
@pytest.mark.parametrize('script', ['build.sh', 'test.sh', 'export.sh'])
def test_shell_scripts_parse_and_print_help(script):
    path = STEP6 / script
    assert subprocess.run(['bash', '-n', str(path)], capture_output=True).returncode == 0
    result = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip()
    result = subprocess.run(['bash', str(path), '--no-such-flag'], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith('error: ')
    if shutil.which('shellcheck'):
        result = subprocess.run(['shellcheck', str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_dockerfile_copies_what_exists_and_runs_as_algorithm():
    dockerfile = (STEP6 / 'Dockerfile').read_text()
    instructions = re.sub(r'\\\n', ' ', dockerfile).splitlines()
    base = next(line.split('=', 1)[1] for line in instructions if line.startswith('ARG BASE_IMAGE='))
    assert re.fullmatch(r'pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime', base)
    ignore = (STEP6 / 'Dockerfile.dockerignore').read_text().splitlines()
    for line in instructions:
        if line.startswith('COPY') and '--from=' not in line:
            sources = [s for s in line.split()[1:-1] if not s.startswith('--')]
            for source in sources:
                assert (REPO / source).exists(), f'{source} is copied but does not exist'
                assert f'!{source.rstrip("/")}' in [i.rstrip('/') for i in ignore], f'{source} is ignored'
    assert [line for line in instructions if line.startswith('USER')] == ['USER algorithm']
    entrypoint = next(line for line in instructions if line.startswith('ENTRYPOINT'))
    assert json.loads(entrypoint.split(None, 1)[1]) == ['python', '/opt/algorithm/process.py']
    from cldetection.grand_challenge import DEFAULT_CONFIG, DEFAULT_WEIGHTS
    assert f'config.py weights.pth {DEFAULT_CONFIG.parent}/' in dockerfile
    assert DEFAULT_CONFIG.name == 'config.py' and DEFAULT_WEIGHTS.name == 'weights.pth'
