"""Does a code change alter what a config trains? Train it a few iterations at two commits, same seed, and compare.

For refactors that must not change the model (issue 38: "the default config trains the same model"): each commit
is exported with ``git archive`` into a temporary folder, trains ``CONFIG`` for ``--epochs`` epochs with
``--seed`` on the same synthetic data (step 2 of ``cldetection.synthetic``'s radiographs) in a process of its own
that imports that commit's ``cldetection``, and the two final state dicts are compared tensor by tensor (the
local stage's parameter names of earlier versions are mapped to today's). Prints one line per commit and the
verdict; exits 1 when they differ. Bitwise equality needs the same CPU and float32 (bfloat16 autocast follows the
hardware): run it on one machine, with ``--cfg-options model.precision=fp32`` on a bfloat16 CPU.

    python -m benchmarks.same_training --base 8b3138f --config cldetection_configs/cascade_hrnet-s_cpu.py
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]

#: Run inside the exported tree: train, then save the state dict under today's names.
TRAIN_SNIPPET = '''
import sys
from pathlib import Path
tree, data, work, out, config, epochs, seed = sys.argv[1:8]
sys.path.insert(0, tree)
import torch
import cldetection
from cldetection.prepare import prepare_coco_dataset
from cldetection.synthetic import generate_synthetic_dataset
from cldetection.train import latest_checkpoint, train
data = Path(data)
if not (data / 'coco' / 'train.json').is_file():
    stack, gt = generate_synthetic_dataset(data / 'challenge', num_images=20, seed=0, image_size=(720, 576))
    prepare_coco_dataset(stack, gt, data / 'coco', seed=0, progress=False)
options = {'data_root': str(data / 'coco'), 'train_cfg.max_epochs': int(epochs)}
for option in sys.argv[8:]:
    key, _, value = option.partition('=')
    options[key] = value
run = train(str(Path(tree) / config), work_dir=work, cfg_options=options, seed=int(seed), no_pretrained=True,
            no_validate=True)
state = torch.load(latest_checkpoint(run), map_location='cpu', weights_only=False)['state_dict']
torch.save({k.replace('refine_backbone.', 'local.backbone.').replace('refine_head.', 'local.head.'): v
            for k, v in state.items()}, out)
print(cldetection.__file__)
'''


def export(commit: str, folder: Path) -> Path:
    """``commit`` of this repository as a plain tree in ``folder`` (``WORKTREE``: the working tree as it is)."""
    if commit == 'WORKTREE':
        return REPO
    folder.mkdir(parents=True)
    archive = subprocess.run(['git', '-C', str(REPO), 'archive', commit], check=True, capture_output=True).stdout
    subprocess.run(['tar', '-x', '-C', str(folder)], input=archive, check=True)
    return folder


def train_at(tree: Path, scratch: Path, name: str, args: argparse.Namespace) -> Path:
    out = scratch / f'{name}.pt'
    proc = subprocess.run([sys.executable, '-c', TRAIN_SNIPPET, str(tree), str(scratch / 'data'),
                           str(scratch / f'work-{name}'), str(out), args.config, str(args.epochs), str(args.seed),
                           *args.cfg_options], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': str(tree)})  # that tree's cldetection
    if proc.returncode != 0:
        raise SystemExit(f'error: training at {name} failed: {proc.stderr.strip().splitlines()[-1:]}')
    print(f'{name}: trained with {proc.stdout.strip().splitlines()[-1]}')
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--base', required=True, help='the commit to compare against (e.g. the last release)')
    parser.add_argument('--head', default='WORKTREE', help='the commit to check (default: the working tree)')
    parser.add_argument('--config', default='cldetection_configs/cascade_hrnet-s_cpu.py',
                        help='config path relative to the repository root (default: %(default)s)')
    parser.add_argument('--epochs', type=int, default=2, help='epochs of 15 images (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='training seed (default: %(default)s)')
    parser.add_argument('--cfg-options', nargs='*', default=[], help='KEY=VALUE overrides for both trainings')
    args = parser.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory(prefix='same-training-') as scratch_name:
        scratch = Path(scratch_name)
        states = [torch.load(train_at(export(commit, scratch / f'tree-{i}'), scratch, commit, args))
                  for i, commit in enumerate((args.base, args.head))]
    base, head = states
    if list(base) != list(head):
        print(f'different parameters: {sorted(set(base) ^ set(head))[:5]}')
        return 1
    differing = [k for k in base if not torch.equal(base[k], head[k])]
    print(f'{len(base)} tensors, {len(differing)} differ' + (f' (e.g. {differing[0]})' if differing else
                                                              ': the same model'))
    return 1 if differing else 0


if __name__ == '__main__':
    sys.exit(main())
