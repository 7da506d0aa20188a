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
from cldetection.grand_challenge import (INPUT_SUBDIR, INPUTS_JSON, MODEL_DIR_ENV, OUTPUT_NAME, compare_predictions,
                                         find_input_stacks, main, process_main, prediction_schema_problems,
                                         resolve_model, run_algorithm, stage_model)
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


# ------------------------------------------------------------------------- inputs.json and /opt/ml/model
def inputs_json(root: Path, entries: object) -> Path:
    (root / INPUTS_JSON).write_text(json.dumps(entries))
    return root


def socket_value(slug: str, relative_path: str, key: str = 'socket') -> dict:
    """One entry of the platform's inputs.json (newer platform versions say "socket", older "interface")."""
    return {key: {'slug': slug, 'kind': 'Image', 'super_kind': 'Image', 'relative_path': relative_path},
            'image': {'name': 'stack.mha'}, 'file': None, 'value': None}


@pytest.mark.parametrize('key', ['socket', 'interface'])
def test_inputs_json_names_the_stack_folder(key, tmp_path):
    root = input_folder(tmp_path / 'input')
    (root / INPUT_SUBDIR / 'fixed.mha').write_bytes(b'')  # the fixed folder: not looked at when inputs.json is there
    (root / 'elsewhere').mkdir()
    (root / 'elsewhere' / 'b.mha').write_bytes(b'')
    (root / 'elsewhere' / 'a.mha').write_bytes(b'')
    inputs_json(root, [socket_value('some-other-input', 'images/other', key),
                       socket_value('lateral-dental-x-rays', 'elsewhere', key)])
    assert find_input_stacks(root) == [root / 'elsewhere' / 'a.mha', root / 'elsewhere' / 'b.mha']


@pytest.mark.parametrize('entries, message', [
    ([{'socket': {'slug': 'chest-x-ray', 'relative_path': 'images/chest-x-ray'}}], "no \"lateral-dental-x-rays\""),
    ([socket_value('lateral-dental-x-rays', '../outside')], 'leaves the input folder'),
    ([socket_value('lateral-dental-x-rays', '/abs')], 'leaves the input folder'),
    ({'socket': 'not a list'}, 'expected a list'),
    ([{'image': {}}], 'no "socket"'),
    ('{broken', 'not valid JSON'),
])
def test_bad_inputs_json_is_one_line_error(entries, message, tmp_path, capsys):
    root = input_folder(tmp_path / 'input')
    if isinstance(entries, str):
        (root / INPUTS_JSON).write_text(entries)
    else:
        inputs_json(root, entries)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(process_main, ['--input-dir', str(root), '--output-dir', str(tmp_path / 'out'), '--config', 'c.py',
                               '--weights', 'w.pth'])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, message)
    assert not (tmp_path / 'out').exists()


def _tree(root: Path) -> list[tuple[str, int, int, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
                  for p in [root, *root.rglob('*')])


def test_uploaded_model_tarball_runs_from_opt_ml_model_on_a_read_only_input(test_model, synthetic, tmp_path):
    """The container's run, outside Docker: the model tarball unpacked to a stand-in for /opt/ml/model (moved by
    the environment variable), /input read-only with inputs.json, no model options on the command line."""
    import tarfile

    stack, _ = synthetic
    tarball = tmp_path / 'model.tar.gz'
    assert main(['tarball', '--config', str(test_model[0]), '--weights', str(test_model[1]),
                 '--out', str(tarball)]) == 0
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == ['config.py', 'weights.pth']
        tar.extractall(tmp_path / 'opt-ml-model', filter='data')
    inputs = inputs_json(input_folder(tmp_path / 'input', stack),
                         [socket_value('lateral-dental-x-rays', str(INPUT_SUBDIR))])
    before = _tree(inputs)
    for path in [inputs, *inputs.rglob('*')]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        result = subprocess.run([sys.executable, str(STEP6 / 'process.py'), '--input-dir', str(inputs),
                                 '--output-dir', str(tmp_path / 'output'), '--device', 'cpu', '--no-progress'],
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ, 'PYTHONPATH': str(REPO),
                                     MODEL_DIR_ENV: str(tmp_path / 'opt-ml-model')})
    finally:
        for path in [inputs, *inputs.rglob('*')]:
            path.chmod(path.stat().st_mode | 0o200)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'opt-ml-model/config.py' in result.stderr  # the log names the model it runs
    assert _tree(inputs) == before  # nothing written, moved or touched (write bits given back above)
    output = tmp_path / 'output' / OUTPUT_NAME
    assert prediction_schema_problems(json.loads(output.read_text())) == []
    predict_stack_to_json(*test_model, stack, tmp_path / 'step5.json', device='cpu', progress=False)
    assert compare_predictions(output, tmp_path / 'step5.json', tolerance_px=1e-6).ok


def test_model_resolution_order_and_errors(tmp_path):
    uploaded, baked = tmp_path / 'opt-ml-model', tmp_path / 'baked'
    for folder in (uploaded, baked / 'inner'):
        folder.mkdir(parents=True)
        (folder / 'config.py').write_text('')
        (folder / 'weights.pth').write_bytes(b'')
    explicit = (tmp_path / 'c.py', tmp_path / 'w.pth')
    assert resolve_model(*explicit, model_dir=uploaded, baked_dir=baked) == explicit
    assert resolve_model(None, None, uploaded, baked) == (uploaded / 'config.py', uploaded / 'weights.pth')
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert resolve_model(None, None, empty, baked) == (baked / 'inner' / 'config.py', baked / 'inner' / 'weights.pth')
    assert resolve_model(None, None, tmp_path / 'absent', baked)[0] == baked / 'inner' / 'config.py'

    from cldetection.errors import InputError
    with pytest.raises(InputError, match='go together'):
        resolve_model(explicit[0], None, uploaded, baked)
    with pytest.raises(InputError, match='no model'):
        resolve_model(None, None, empty, tmp_path / 'absent')
    (uploaded / 'weights.pth').unlink()
    with pytest.raises(InputError, match='holds config.py but no weights.pth'):  # never falls back to the baked one
        resolve_model(None, None, uploaded, baked)
    (uploaded / 'config.py').rename(uploaded / 'model.pth')
    with pytest.raises(InputError, match='holds model.pth but not one model'):
        resolve_model(None, None, uploaded, baked)


def test_process_uses_the_model_dir_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / 'nothing-here'))
    with pytest.raises(SystemExit):
        run_cli(process_main, ['--input-dir', str(tmp_path), '--output-dir', str(tmp_path / 'out')])
    assert_one_line_error(capsys.readouterr().err, 'nothing-here: no model')


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


def test_the_weights_calibration_travels_with_them(test_model, tmp_path):
    """A calibration beside the weights (python -m cldetection.calibrate) is staged and packed with them, still
    theirs (the weights are copied byte for byte, and the calibration names their SHA-256)."""
    import tarfile

    from cldetection.confidence import calibration_path, file_sha256

    config, weights = test_model
    copy = tmp_path / 'model' / 'mine.pth'
    copy.parent.mkdir()
    shutil.copyfile(weights, copy)
    calibration_path(copy).write_text(json.dumps({'checkpoint_sha256': file_sha256(copy)}))
    config_out, weights_out = stage_model(config, copy, tmp_path / 'staged')
    assert json.loads(calibration_path(weights_out).read_text())['checkpoint_sha256'] == file_sha256(weights_out)
    tarball = tmp_path / 'model.tar.gz'
    assert main(['tarball', '--config', str(config), '--weights', str(copy), '--out', str(tarball)]) == 0
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == ['config.py', 'weights.pth', 'weights.pth.calibration.json']


# ---------------------------------------------------------------------------------- static checks
def linter(name: str) -> str:
    """hadolint / shellcheck: installed into the venv by ``make install`` (requirements.lock), so required."""
    path = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get('PATH', '')]))
    assert path, f'{name} not found next to {sys.executable} or on PATH: run make install (requirements.lock)'
    return path


@pytest.mark.parametrize('script', ['build.sh', 'test.sh', 'export.sh'])
def test_shell_scripts_parse_and_print_help(script):
    path = STEP6 / script
    assert subprocess.run(['bash', '-n', str(path)], capture_output=True).returncode == 0
    result = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip()
    result = subprocess.run(['bash', str(path), '--no-such-flag'], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith('error: ')


@pytest.mark.parametrize('script', ['step6_docker_and_upload/build.sh', 'step6_docker_and_upload/test.sh',
                                    'step6_docker_and_upload/export.sh', 'tools/find_python.sh', '.ci/run'])
def test_shellcheck(script):
    result = subprocess.run([linter('shellcheck'), '--shell=bash', str(REPO / script)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_hadolint(tmp_path):
    result = subprocess.run([linter('hadolint'), '--no-color', str(STEP6 / 'Dockerfile')], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / 'Dockerfile'  # the linter does fail: an unpinned base and a cd in RUN
    bad.write_text('FROM ubuntu\nRUN cd /tmp && echo hi\n')
    result = subprocess.run([linter('hadolint'), '--no-color', str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and 'DL3006' in result.stdout and 'DL3003' in result.stdout


def test_test_sh_runs_the_container_like_the_platform():
    script = re.sub(r'\\\n\s*', ' ', (STEP6 / 'test.sh').read_text())
    run = next(line for line in script.splitlines() if line.startswith('docker run') and '"$TAG"' in line
               and '--entrypoint' not in line)
    for option in ('--network none', '--volume "$WORK/input:/input:ro"', '--volume "$WORK/output:/output"',
                   '--volume "$WORK/tmp:/tmp"', '"${model_args[@]}"', '--memory "$MEMORY"'):
        assert option in run, option
    assert '"$WORK/model:/opt/ml/model:ro"' in script and '"$WORK/input/inputs.json"' in script
    assert '"slug": "lateral-dental-x-rays"' in script and '"relative_path": "images/lateral-dental-x-rays"' in script


def test_dockerfile_copies_what_exists_and_runs_as_algorithm():
    dockerfile = (STEP6 / 'Dockerfile').read_text()
    instructions = re.sub(r'\\\n', ' ', dockerfile).splitlines()
    base = next(line.split('=', 1)[1] for line in instructions if line.startswith('ARG BASE_IMAGE='))
    assert re.fullmatch(r'pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime', base)
    # the image's torch is the one the lock pins (its own torch line is left out of the image)
    lock_torch = re.search(r'^torch==(\S+)', (REPO / 'requirements.lock').read_text(), re.M).group(1)
    assert base.split(':')[1].startswith(f'{lock_torch}-')
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
    from cldetection.grand_challenge import DEFAULT_CONFIG, DEFAULT_WEIGHTS, UPLOADED_MODEL_DIR
    assert f'COPY --from=model --chown=algorithm:algorithm . {DEFAULT_CONFIG.parent}/' in dockerfile
    assert DEFAULT_CONFIG.name == 'config.py' and DEFAULT_WEIGHTS.name == 'weights.pth'
    assert str(UPLOADED_MODEL_DIR) == '/opt/ml/model' and f'mkdir -p {DEFAULT_CONFIG.parent} /opt/ml/model' in dockerfile
