"""Step 1: the environment check, on a working and on a broken environment."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT

STEP1 = str(REPO_ROOT / 'step1_test_mmpose.py')


def test_reports_versions_and_runs_a_forward_pass():
    result = subprocess.run([sys.executable, STEP1, '--device', 'cpu'], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('python ') and 'Warning' not in result.stderr, result.stderr  # quiet start
    for name in ('python', 'torch', 'mmengine', 'mmcv', 'mmpose', 'cldetection', 'cuda'):
        assert any(line.split()[0] == name for line in result.stdout.splitlines() if line.strip()), name
    # the default cascade: 256 x 320 input -> 64 x 80 heatmaps, and 38 patches of 128 x 128 -> 38 x 32 x 32 each
    assert '[1, 3, 320, 256] -> [1, 38, 80, 64] + local stage [38, 3, 128, 128] -> [38, 38, 32, 32] on cpu' \
        in result.stdout
    assert result.stdout.strip().endswith('OK: the environment works')


def test_broken_install_gives_an_actionable_one_line_error(tmp_path):
    broken = tmp_path / 'mmpose'
    broken.mkdir()
    (broken / '__init__.py').write_text('raise ImportError("simulated broken mmpose")\n')
    env = {'PYTHONPATH': str(tmp_path), 'PATH': '/usr/bin:/bin'}
    result = subprocess.run([sys.executable, STEP1], capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: cannot import cldetection') and 'simulated broken mmpose' in last
    assert 'make install' in last and 'Traceback' not in result.stderr


def test_missing_config_is_reported(tmp_path):
    result = subprocess.run([sys.executable, STEP1, '--config', str(tmp_path / 'none.py')], capture_output=True,
                            text=True, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f'error: {tmp_path / "none.py"}: config file not found; ' \
        'run step 1 from the repository root or pass --config'
