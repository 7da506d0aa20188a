"""Every step starts with its own output: the known-harmless upstream warnings (cldetection.compat, fix 5) are
filtered, so neither ``--help`` nor a real run (tests/test_step1.py) prints anything before it."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

STEP_SCRIPTS = ['step1_test_mmpose.py', 'step2_prepare_coco_dataset.py', 'step3_train_and_evaluation.py',
                'step4_test_and_visualize.py', 'step5_predict_expected_output.py',
                'step6_docker_and_upload/process.py']


@pytest.mark.parametrize('script', STEP_SCRIPTS)
def test_help_is_the_first_and_only_output(script):
    result = subprocess.run([sys.executable, str(REPO_ROOT / script), '--help'], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0
    assert result.stderr == ''  # no warning, no log line
    assert result.stdout.startswith(f'usage: {script.rsplit("/", 1)[-1]} ')
