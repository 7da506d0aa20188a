#!/usr/bin/env python
"""Step 1: check the environment: versions, then build the default model and run one forward pass."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

try:  # importing the package applies the compat fixes and imports MMPose: the first thing that can break
    import cldetection  # noqa: F401
except Exception as err:  # noqa: BLE001 - any failure here means a broken install; say so in one line
    sys.exit(f'error: cannot import cldetection ({type(err).__name__}: {err}); run `make install` '
             '(or `pip install --no-deps -r requirements.lock && pip install --no-deps -e .`)')

from cldetection.errors import run_cli  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description='Print Python, torch (+CUDA), mmengine, mmcv, mmpose and cldetection versions, build the default '
                    'model with random weights and run one forward pass. Exits non-zero with a hint if anything '
                    'is missing or broken.')
    parser.add_argument('--config', help='model config to build (default: the default cldetection config)')
    parser.add_argument('--device', help='cpu, cuda or cuda:N (default: cuda if available, else cpu)')
    args = parser.parse_args(argv)

    from cldetection.env_check import DEFAULT_CONFIG, collect_versions, forward_default_model
    for name, version in collect_versions().items():
        print(f'{name:12s} {version}')
    result = forward_default_model(args.config or DEFAULT_CONFIG, device=args.device)
    print(f'model        {result["config"]} ({result["parameters"] / 1e6:.1f} M parameters)')
    local = ''.join(f' + {key} stage {result[f"{key}_input"]} -> {result[f"{key}_output"]}'
                    for key in ('middle', 'local') if f'{key}_input' in result)
    print(f'forward      {result["input"]} -> {result["output"]}{local} on {result["device"]} '
          f'in {result["forward_seconds"]:.2f} s')
    print('OK: the environment works')
    return 0


if __name__ == '__main__':
    run_cli(main)
