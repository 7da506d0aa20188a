"""Installation: which Python ``make install`` picks (tools/find_python.sh), and CI runs the README's test command."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

FIND_PYTHON = str(REPO_ROOT / 'tools' / 'find_python.sh')


def find_python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', FIND_PYTHON, *args], capture_output=True, text=True, timeout=60)


def version_of(python: str) -> str:
    return subprocess.run([python, '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_this_python_is_accepted_by_path_and_by_version():
    this = '%d.%d' % sys.version_info[:2]
    by_path = find_python(sys.executable)
    assert by_path.returncode == 0 and version_of(by_path.stdout.strip()) == this
    by_version = find_python(this)
    assert by_version.returncode == 0 and version_of(by_version.stdout.strip()) == this


def test_default_is_a_supported_python_at_least_as_new_as_this_one():
    result = find_python()
    assert result.returncode == 0, result.stderr
    found = tuple(map(int, version_of(result.stdout.strip()).split('.')))
    assert (3, 11) <= found <= (3, 13) and found >= sys.version_info[:2]


@pytest.mark.parametrize('args, message', [
    (['3.10'], 'Python 3.10 is not supported'),
    (['python2.7'], 'not supported'),
    (['/no/such/python'], 'not found, does not run'),
])
def test_unsupported_or_missing_python_is_refused(args, message):
    result = find_python(*args)
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr.startswith('error: ') and message in result.stderr


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO_ROOT / 'README.md').read_text()
    section = readme.split('### Tests', 1)[1]
    command = section.split('```bash\n', 1)[1].split('\n```', 1)[0].strip()
    ci = [line for line in (REPO_ROOT / '.ci' / 'run').read_text().splitlines()
          if line.strip() and not line.startswith('#') and not line.startswith(('set ', 'cd '))]
    # the one step before it installs the browser that the report's test needs (never failing: that test skips)
    assert ci == ['tools/install_chromium.sh', command]
