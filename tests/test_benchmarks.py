"""The benchmark harness's own logic, on tiny data: fold split, ISBI ground truth, result schema, RESULTS.md.

No training and no real data here; the benchmark itself (``python -m benchmarks.run``) is not part of the tests.
The studies (``benchmarks/studies/``) are tested in ``test_studies.py``.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks import data, results
from cldetection.challenge_io import load_landmarks, write_json_atomic
from cldetection.errors import InputError


# ------------------------------------------------------------------------------------------ fold split
def test_cl2023_folds_partition_the_images_deterministically() -> None:
    n = 193
    splits = [data.cl2023_fold_split(n, fold) for fold in range(data.CL2023_FOLDS)]
    tests = [s['test'] for s in splits]
    assert sorted(z for t in tests for z in t) == list(range(1, n + 1))  # disjoint and covering
    assert sorted(len(t) for t in tests) == [38, 38, 39, 39, 39]  # balanced
    for s in splits:
        parts = [set(s['train']), set(s['valid']), set(s['test'])]
        assert sum(map(len, parts)) == n and set().union(*parts) == set(range(1, n + 1))
        assert len(s['valid']) == 24 and not parts[1] & parts[2]  # model selection never sees the test fold
    assert [data.cl2023_fold_split(n, f) for f in range(5)] == splits  # deterministic
    assert data.cl2023_fold_split(n, 0, seed=1)['test'] != splits[0]['test']  # the seed matters
    with pytest.raises(ValueError):
        data.cl2023_fold_split(n, 5)


# ------------------------------------------------------------------------------------ ISBI ground truth
def _tiny_isbi_csv(path: Path) -> Path:
    names = [f'l{k}' for k in range(data.ISBI_NUM_LANDMARKS)]
    header = 'image,split,annotator,' + ','.join(f'{n}_x,{n}_y' for n in names)
    senior = ','.join(f'{10 * k},{20 * k + 1}' for k in range(data.ISBI_NUM_LANDMARKS))
    junior = ','.join(f'{10 * k + 3},{20 * k + 5}' for k in range(data.ISBI_NUM_LANDMARKS))
    path.write_text(f'{header}\n001.jpg,train,senior,{senior}\n001.jpg,train,junior,{junior}\n')
    return path


def test_isbi_ground_truth_is_the_mean_of_the_two_annotators(tmp_path: Path) -> None:
    annotations = data.read_isbi_annotations(_tiny_isbi_csv(tmp_path / 'landmarks.csv'))
    document = data.isbi_ground_truth_document(annotations, ['001.jpg'], 'mean')
    gt_path = write_json_atomic(document, tmp_path / 'gt.json')
    gt = load_landmarks(gt_path)  # the project's own reader accepts it
    assert gt.slices == [1] and gt.num_landmarks == 19 and gt.spacing[1] == pytest.approx(0.1)
    # hand-computed: senior (10k, 20k+1), junior (10k+3, 20k+5) -> mean (10k+1.5, 20k+3)
    assert gt.points[1][1] == (1.5, 3.0)
    assert gt.points[1][19] == (181.5, 363.0)
    senior = data.isbi_ground_truth_document(annotations, ['001.jpg'], 'senior')
    assert senior['points'][18]['point'] == [180.0, 361.0, 1]
    # junior vs senior: every landmark is off by (3, 4) px = 5 px = 0.5 mm
    disagreement = data.annotator_disagreement(annotations, ['001.jpg'])
    assert disagreement['MRE'] == pytest.approx(0.5) and disagreement['SDR 2.0mm'] == 100.0


def test_isbi_annotations_refuse_an_image_with_one_annotator(tmp_path: Path) -> None:
    csv_path = _tiny_isbi_csv(tmp_path / 'landmarks.csv')
    csv_path.write_text(''.join(csv_path.read_text().splitlines(keepends=True)[:2]))
    with pytest.raises(InputError, match='no row for annotator'):
        data.read_isbi_annotations(csv_path)


# ------------------------------------------------------------------------------------------ result.json
def _fake_result(num_landmarks: int = 19) -> dict:
    metrics = {'MRE': 1.8, 'MRE_SD': 1.2, 'SDR 2.0mm': 70.0, 'SDR 2.5mm': 78.0, 'SDR 3.0mm': 84.0,
               'SDR 4.0mm': 91.0}
    per_landmark = [{'landmark': k + 1, 'name': f'l{k}', 'MRE': 1.0 + k / 10} for k in range(num_landmarks)]
    return {
        'schema': results.SCHEMA, 'protocol': 'isbi2015', 'split': 'Test1 (151-300)', 'fold': None,
        'config': 'cldetection_configs/tiny_cpu.py', 'budget': 'cpu', 'budget_overrides': {'max_epochs': 1},
        'date': '2025-01-01T00:00:00+00:00', 'git_commit': 'abcdef1234567',
        'hardware': {'cpu': 'AMD EPYC', 'cores': 2, 'memory_gib': 23.4, 'gpu': None},
        'data': {'num_landmarks': num_landmarks, 'train_images': 135, 'valid_images': 15, 'test_images': 150},
        'primary_ground_truth': 'mean', 'metrics': {'mean': metrics, 'senior': dict(metrics, MRE=1.9)},
        'per_landmark_mre': {'mean': per_landmark, 'senior': per_landmark},
        'training': {'images_per_s': 3.5, 'wall_s': 100.0, 'peak_rss_bytes': 3 * 2 ** 30, 'epochs': 2},
        'inference': {'ms_per_image': 250.0, 'images': 10, 'device': 'cpu'},
        'checkpoint': 'best.pth',
    }


def test_validate_result_accepts_a_complete_result() -> None:
    assert results.validate_result(_fake_result()) is not None


@pytest.mark.parametrize('break_it, message', [
    (lambda r: r.pop('hardware'), 'missing hardware'),
    (lambda r: r['metrics']['mean'].update({'SDR 2.0mm': 95.0}), 'must not decrease'),
    (lambda r: r['metrics']['senior'].update({'MRE': float('nan')}), 'senior.MRE'),
    (lambda r: r['per_landmark_mre']['mean'].pop(), 'must list 19 landmarks'),
    (lambda r: r.update(fold=0), 'fold must be'),
    (lambda r: r.update(budget='tpu'), 'budget'),
    (lambda r: r['training'].update(images_per_s=0), 'training.images_per_s'),
    (lambda r: r.update(primary_ground_truth='official'), 'primary_ground_truth'),
])
def test_validate_result_names_what_is_wrong(break_it, message: str) -> None:
    result = copy.deepcopy(_fake_result())
    break_it(result)
    with pytest.raises(results.ResultSchemaError, match=message):
        results.validate_result(result)


# ------------------------------------------------------------------------------------------- RESULTS.md
def test_results_md_gets_one_header_and_appended_rows(tmp_path: Path) -> None:
    md = tmp_path / 'RESULTS.md'
    result = results.validate_result(_fake_result())
    results.append_rows(md, results.result_rows(result))
    results.replace_summary(md, ['## Summary', '', 'fold means here'])
    second = dict(result, config='cldetection_configs/seed-baseline_hrnet-w48_msra_512x512.py')
    results.append_rows(md, results.result_rows(second))
    text = md.read_text()
    assert text.count(results.RUNS_HEADING) == 1 and text.count('| Date |') == 1
    assert text.rstrip().endswith('fold means here')  # rows go into the table, not after the summary
    rows = results.read_rows(md)
    assert [(r['Config'], r['Ground truth']) for r in rows] == [
        ('tiny_cpu', 'mean'), ('tiny_cpu', 'senior'),
        ('seed-baseline_hrnet-w48_msra_512x512', 'mean'), ('seed-baseline_hrnet-w48_msra_512x512', 'senior')]
    assert rows[0]['MRE'] == '1.800' and rows[1]['MRE'] == '1.900' and rows[0]['Train peak RSS GiB'] == '3.00'
    assert rows[0]['Hardware'] == 'AMD EPYC, 2 cores'


def test_the_hardware_cell_names_the_vector_unit_and_bfloat16_where_recorded() -> None:
    """Two 'AMD EPYC' machines trained the default in 15 and 62 min: rows say which (older results keep theirs)."""
    from benchmarks.run import hardware

    base = {'cpu': 'AMD EPYC', 'cores': 2, 'gpu': None}
    assert results.hardware_label(base) == 'AMD EPYC, 2 cores'
    assert results.hardware_label(dict(base, cpu_capability='AVX2', cpu_bf16=False)) == 'AMD EPYC (AVX2), 2 cores'
    assert results.hardware_label(dict(base, cpu_capability='AVX512', cpu_bf16=True)) == \
        'AMD EPYC (AVX512, bf16), 2 cores'
    here = hardware()
    assert isinstance(here['cpu_capability'], str) and here['cpu_capability'] and isinstance(here['cpu_bf16'], bool)


def test_a_shortened_run_says_so_in_its_budget_cell() -> None:
    result = copy.deepcopy(_fake_result())
    assert results.result_rows(result)[0]['Budget'] == 'cpu'
    result.update(budget='config', budget_overrides={'schedule': 'config', 'shortened_to_epochs': 40})
    assert results.result_rows(result)[0]['Budget'] == 'config, 40 ep'
    result['budget_overrides']['train_on_valid'] = True
    assert results.result_rows(result)[0]['Budget'] == 'config, 40 ep, train+valid'


def test_commit_cell_keeps_the_dirty_mark_of_short_and_full_hashes() -> None:
    result = copy.deepcopy(_fake_result())
    for commit, cell in [('f954cfe+dirty', 'f954cfe+dirty'), ('abcdef1234567', 'abcdef123456'),
                         ('a' * 40 + '+dirty', 'a' * 12 + '+dirty'), ('unknown', 'unknown')]:
        result['git_commit'] = commit
        assert results.result_rows(result)[0]['Commit'] == cell


# ------------------------------------------------------------------------------------ --train-on-valid
def _coco(ids: list[int]) -> dict:
    return {'images': [{'id': i, 'file_name': f'{i}.png', 'width': 8, 'height': 8, 'spacing': 0.1} for i in ids],
            'annotations': [{'id': i, 'image_id': i, 'category_id': 1, 'keypoints': [1, 2, 2]} for i in ids],
            'categories': [{'id': 1, 'name': 'cephalometric'}], 'info': {'description': 'step 2'}}


def test_train_and_valid_annotations_merge_into_one_training_file(tmp_path: Path) -> None:
    write_json_atomic(_coco([1, 4, 5]), tmp_path / 'train.json')
    write_json_atomic(_coco([2, 3]), tmp_path / 'valid.json')
    out = data.merge_training_annotations([tmp_path / 'train.json', tmp_path / 'valid.json'],
                                          tmp_path / 'run' / 'train+valid.json', 'train + valid')
    merged = json.loads(out.read_text())
    assert data.image_ids(out) == [1, 2, 3, 4, 5]
    assert sorted(a['image_id'] for a in merged['annotations']) == [1, 2, 3, 4, 5]
    assert merged['categories'] == _coco([])['categories']
    assert json.loads((tmp_path / 'valid.json').read_text()) == _coco([2, 3])  # inputs untouched


def test_train_and_valid_annotations_that_overlap_are_refused(tmp_path: Path) -> None:
    write_json_atomic(_coco([1, 2]), tmp_path / 'train.json')
    write_json_atomic(_coco([2, 3]), tmp_path / 'valid.json')
    with pytest.raises(InputError, match=r'valid\.json.*shares image ids \[2\]'):
        data.merge_training_annotations([tmp_path / 'train.json', tmp_path / 'valid.json'], tmp_path / 'tv.json',
                                        'train + valid')
    assert not (tmp_path / 'tv.json').exists()


def test_a_run_merges_its_training_files_once(tmp_path: Path) -> None:
    """train.json alone is used as it is; with valid and an extra file, all three go into one merged file."""
    from benchmarks import run

    protocol = _fake_protocol(tmp_path)
    write_json_atomic(_coco([1, 4, 5]), tmp_path / 'train' / 'train.json')
    write_json_atomic(_coco([2, 3]), tmp_path / 'train' / 'valid.json')
    write_json_atomic(_coco([100001, 100002]), tmp_path / 'pseudo-train.json')
    assert run.merged_training_file(protocol, tmp_path / 'run') is None
    out = run.merged_training_file(protocol, tmp_path / 'run', True, tmp_path / 'pseudo-train.json', 'pseudo')
    assert out == tmp_path / 'run' / 'train+valid+pseudo.json'
    assert data.image_ids(out) == [1, 2, 3, 4, 5, 100001, 100002]
    assert json.loads(out.read_text())['info']['split'] == 'train + valid + pseudo'
    assert [p.name for p in (tmp_path / 'run').iterdir()] == [out.name]  # one merge, no intermediate file


def test_train_on_valid_config_trains_on_the_merged_file(tmp_path: Path, repo_root: Path) -> None:
    from mmengine.config import Config

    from benchmarks import run

    protocol = _fake_protocol(tmp_path)
    merged = tmp_path / 'run' / 'train+valid.json'
    out = tmp_path / 'config.py'
    _, overrides = run.derive_config(repo_root / 'cldetection_configs' / 'tiny_cascade_cpu.py', protocol, None, out,
                                     pretrained=False, train_ann_file=merged)
    cfg = Config.fromfile(str(out))
    assert cfg.train_dataloader.dataset.ann_file == str(merged)  # absolute: not joined with data_root
    assert cfg.train_dataloader.dataset.data_root == str(tmp_path / 'train')  # the images stay where they are
    assert cfg.val_dataloader.dataset.ann_file == 'valid.json'
    assert overrides['train_ann_file'] == str(merged)


def test_training_subsets_are_nested_random_and_keep_their_annotations(tmp_path: Path) -> None:
    """A learning curve's training sets differ only by the images added: nested across sizes, fixed by the
    subset seed, each image with its own annotation; an impossible size is a one-line error naming the file."""
    write_json_atomic(_coco(list(range(1, 41))), tmp_path / 'train.json')
    small = data.subset_training_annotations(tmp_path / 'train.json', tmp_path / 'small.json', 10)
    large = data.subset_training_annotations(tmp_path / 'train.json', tmp_path / 'large.json', 20)
    assert len(data.image_ids(small)) == 10 and set(data.image_ids(small)) < set(data.image_ids(large))
    assert data.image_ids(small) != list(range(1, 11))  # drawn at random, not the first ids
    kept = json.loads(small.read_text())
    assert sorted(a['image_id'] for a in kept['annotations']) == data.image_ids(small)
    assert kept['info']['split'].endswith('10 of 40 images (subset seed 0)')
    again = data.subset_training_annotations(tmp_path / 'train.json', tmp_path / 'again.json', 10)
    other = data.subset_training_annotations(tmp_path / 'train.json', tmp_path / 'other.json', 10, seed=1)
    assert data.image_ids(again) == data.image_ids(small) and data.image_ids(other) != data.image_ids(small)
    assert data.image_ids(tmp_path / 'train.json') == list(range(1, 41))  # input untouched
    for size in (0, 41):
        with pytest.raises(InputError, match=rf'train\.json.*has 40 training images; cannot take a subset of {size}'):
            data.subset_training_annotations(tmp_path / 'train.json', tmp_path / 'bad.json', size)


def test_fewer_training_images_train_more_epochs_with_the_same_iterations(tmp_path: Path, repo_root: Path) -> None:
    """--train-images: a quarter of the images for 4x the epochs; the cosine follows the epochs, the warm-up
    (iterations) does not; the run's Budget cell says which subset it trained on."""
    from mmengine.config import Config

    from benchmarks import run

    protocol = _fake_protocol(tmp_path)
    out = tmp_path / 'config.py'
    _, overrides = run.derive_config(repo_root / 'cldetection_configs' / 'cascade_hrnet-s_cpu.py', protocol, None,
                                     out, pretrained=False, epoch_scale=4.0)
    cfg = Config.fromfile(str(out))
    assert cfg.train_cfg.max_epochs == 160 and cfg.train_cfg.val_interval == 20
    assert cfg.default_hooks.checkpoint.interval == 20
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end, warmup.by_epoch) == (0, 17, False)
    assert (cosine.begin, cosine.end, cosine.T_max) == (0, 160, 160)
    assert overrides['epochs_for_fewer_images']['from_epochs'] == 40
    result = copy.deepcopy(_fake_result())
    result['budget_overrides'].update(train_on_valid=True, train_subset={'images': 39, 'of': 154, 'subset_seed': 0})
    assert results.result_rows(result)[0]['Budget'] == 'cpu, train+valid, 39/154 img'


def test_train_on_valid_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    from benchmarks import run

    train_dir, work_dir = tmp_path / 'train', tmp_path / 'work'
    train_dir.mkdir(), work_dir.mkdir()
    for name in ('best_MRE_epoch_35.pth', 'epoch_40.pth'):
        (train_dir / name).write_bytes(name.encode())
    with pytest.raises(InputError, match='no last_checkpoint file'):
        run._keep_checkpoint(train_dir, work_dir, last=True)
    (train_dir / 'last_checkpoint').write_text(str(train_dir / 'epoch_40.pth'))
    source, kept = run._keep_checkpoint(train_dir, work_dir, last=True)
    assert source.name == 'epoch_40.pth' and kept == work_dir / 'last.pth' and kept.read_bytes() == b'epoch_40.pth'
    source, kept = run._keep_checkpoint(train_dir, work_dir)
    assert source.name == 'best_MRE_epoch_35.pth' and kept.read_bytes() == b'best_MRE_epoch_35.pth'


def test_train_on_valid_trains_without_validation(tmp_path: Path) -> None:
    from benchmarks import run

    plain = run.training_command(tmp_path / 'config.py', tmp_path / 'train', 3, False, train_on_valid=False)
    merged = run.training_command(tmp_path / 'config.py', tmp_path / 'train', 3, False, train_on_valid=True)
    assert '--no-validate' not in plain and merged == plain + ['--no-validate']
    assert plain[-5:] == ['--work-dir', str(tmp_path / 'train'), '--seed', '3', '--no-pretrained']


# ------------------------------------------------------------------------------------------- cpu budget
def _fake_protocol(tmp_path: Path, num_landmarks: int = 19) -> data.ProtocolData:
    roots = {name: tmp_path / name for name in ('train', 'test', 'test_senior')}
    return data.ProtocolData('isbi2015', num_landmarks, roots['train'], roots['train'],
                             {'mean': roots['test'], 'senior': roots['test_senior']}, tmp_path / 'test_stack.mha',
                             list(range(1, 151)), 'Test1 (151-300)')


def _sizes(node, key: str) -> set:
    found = set()
    if isinstance(node, dict):
        for k, v in node.items():
            found |= {tuple(v)} if k == key else _sizes(v, key)
    elif isinstance(node, (list, tuple)):
        for v in node:
            found |= _sizes(v, key)
    return found


def test_cpu_budget_is_the_same_reduced_schedule_for_every_config(tmp_path: Path, repo_root: Path) -> None:
    from mmengine.config import Config

    from benchmarks import run

    protocol = _fake_protocol(tmp_path)
    overrides = {}
    for name in ('hrnet-w32_udp_512x512', 'seed-baseline_hrnet-w48_msra_512x512'):
        out = tmp_path / f'{name}.py'
        _, overrides[name] = run.derive_config(repo_root / 'cldetection_configs' / f'{name}.py', protocol,
                                               run.CPU_BUDGET, out, pretrained=False)
        cfg = Config.fromfile(str(out))  # the dumped config loads back as it is
        assert cfg.train_cfg.max_epochs == run.CPU_BUDGET.max_epochs
        assert _sizes(cfg._cfg_dict, 'input_size') == {(256, 256)}  # no 512 left anywhere
        assert _sizes(cfg._cfg_dict, 'heatmap_size') == {(64, 64)}
        warmup, steps = cfg.param_scheduler
        # x 10/250: warm-up 500 iterations -> 20, LR steps at epochs 170 / 200 -> 7 / 8
        assert warmup.end == 20 and steps.milestones == [7, 8] and steps.end <= 10
        assert cfg.model.head.out_channels == 19 and cfg.model.backbone.init_cfg is None
        assert cfg.train_dataloader.dataset.num_landmarks == 19
        assert cfg.train_dataloader.dataset.data_root == str(tmp_path / 'train')
        assert cfg.val_dataloader.dataset.ann_file == 'valid.json'
        assert cfg.test_dataloader.dataset.data_root == str(tmp_path / 'test')
        assert {'type': 'TrainThroughputHook'} in cfg.custom_hooks
        assert 'benchmarks.hooks' in cfg.custom_imports.imports
    # identical overrides; only what they were applied to (the config's own values) may differ
    same = [{k: v for k, v in o.items() if not k.startswith('config_') and k != 'param_scheduler'}
            for o in overrides.values()]
    assert same[0] == same[1] and same[0]['schedule_scale'] == pytest.approx(0.04)


def test_throughput_hook_counts_training_images_and_time(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from benchmarks.hooks import THROUGHPUT_FILE, TrainThroughputHook

    hook, runner = TrainThroughputHook(), SimpleNamespace(work_dir=str(tmp_path))
    for _ in range(2):
        hook.before_train_epoch(runner)
        for _ in range(3):
            hook.after_train_iter(runner, 0, data_batch={'inputs': [0] * 4, 'data_samples': [0] * 4})
        hook.after_train_epoch(runner)
    written = json.loads((tmp_path / THROUGHPUT_FILE).read_text())
    assert written['images'] == 24 and written['epochs'] == 2 and written['seconds'] > 0
    assert written['images_per_s'] == pytest.approx(24 / written['seconds'], rel=1e-2)


# ---------------------------------------------------------------------------------------------- summary
def _row(config: str, split: str, mre: str, sdr2: str, protocol: str = 'cl2023', speed: str = '2.00') -> dict:
    return {'Date': '2025-01-01', 'Protocol': protocol, 'Split': split, 'Ground truth': 'official',
            'Config': config, 'Budget': 'cpu', 'MRE': mre, 'SD': '1.000', 'SDR 2mm': sdr2, 'SDR 2.5mm': '80.00',
            'SDR 3mm': '85.00', 'SDR 4mm': '90.00', 'Train img/s': speed, 'Infer ms/img': '100',
            'Train peak RSS GiB': '3.00', 'Hardware': 'AMD EPYC, 2 cores', 'Commit': 'abcdef123456'}


def test_summary_averages_the_latest_run_of_each_fold(tmp_path: Path) -> None:
    from benchmarks import summary

    rows = [_row('default', 'fold 0 of 5', '9.000', '10.00'),  # replaced by the rerun of fold 0 below
            _row('default', 'fold 1 of 5', '3.000', '50.00'),
            _row('default', 'fold 0 of 5', '2.000', '60.00', speed='4.00'),
            _row('seed-baseline_x', 'fold 0 of 5', '4.000', '40.00')]
    groups = {g.config: g for g in summary.group_rows(rows)}
    default = groups['default']
    assert default.splits == ['fold 0 of 5', 'fold 1 of 5']
    assert default.mean['MRE'] == pytest.approx(2.5) and default.sd['MRE'] == pytest.approx(0.7071, abs=1e-4)
    assert default.mean['SDR 2mm'] == pytest.approx(55.0) and groups['seed-baseline_x'].sd['MRE'] is None
    text = '\n'.join(summary.summary_lines(list(groups.values())))
    assert '| cl2023 | official | default | cpu | 2 | 2.500 ± 0.707 |' in text
    # ratios pair the folds both ran (fold 0 only): MRE 2.0 / 4.0, train speed 4.0 / 2.0, same inference speed
    assert '| 0.50 | 2.00 | 1.00 |' in text
    assert summary.paired_ratio(default, None, 'MRE') is None
    plot = summary.draw_plot(list(groups.values()), tmp_path / 'results.png')
    assert plot.stat().st_size > 10_000


def test_summary_ratio_needs_a_fold_both_configs_ran() -> None:
    from benchmarks import summary

    groups = {g.config: g for g in summary.group_rows([_row('default', 'fold 0 of 5', '2.000', '60.00'),
                                                       _row('seed-baseline_x', 'fold 3 of 5', '4.000', '40.00')])}
    assert summary.paired_ratio(groups['default'], groups['seed-baseline_x'], 'MRE') is None
    line = next(l for l in summary.summary_lines(list(groups.values())) if '| default |' in l)
    assert '| – | – | – |' in line


def test_git_commit_ignores_what_the_harness_writes(tmp_path: Path) -> None:
    import subprocess

    from benchmarks.run import git_commit

    def git(*args: str) -> None:
        subprocess.run(['git', '-c', 'user.name=t', '-c', 'user.email=t@t', *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / 'benchmarks').mkdir()
    (tmp_path / 'benchmarks' / 'RESULTS.md').write_text('# rows\n')
    (tmp_path / 'code.py').write_text('x = 1\n')
    git('init', '-q')
    git('add', '.')
    git('commit', '-q', '-m', 'c')
    head = git_commit(tmp_path)
    assert len(head) == 40 and not head.endswith('+dirty')
    (tmp_path / 'benchmarks' / 'RESULTS.md').write_text('# rows\n| a run |\n')  # appended by the previous run
    assert git_commit(tmp_path) == head
    (tmp_path / 'code.py').write_text('x = 2\n')
    assert git_commit(tmp_path) == head + '+dirty'


def test_git_commit_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    from benchmarks.run import git_commit

    assert git_commit(tmp_path) == 'unknown'  # pytest's temp dirs are not inside a git work tree


# ------------------------------------------------------------------------------------------ --extra-train
def test_extra_training_files_that_would_mislead_are_refused(tmp_path: Path) -> None:
    from benchmarks import run

    relative = write_json_atomic(_coco([7]), tmp_path / 'relative.json')
    with pytest.raises(InputError, match=r"relative\.json.*'7\.png' is not an absolute path"):
        run.read_extra_training_file(relative)
    absolute = _coco([7])
    absolute['images'][0]['file_name'] = str(tmp_path / '7.png')
    write_json_atomic(absolute, tmp_path / 'absolute.json')
    run.read_extra_training_file(tmp_path / 'absolute.json', test_roots=[tmp_path / 'fold0'])
    absolute['images'][0]['file_name'] = str(tmp_path / 'fold0' / 'images' / '7.png')
    write_json_atomic(absolute, tmp_path / 'leaking.json')
    with pytest.raises(InputError, match=r'leaking\.json.*fold0/images/7\.png lies in a test folder'):
        run.read_extra_training_file(tmp_path / 'leaking.json', test_roots=[tmp_path / 'other', tmp_path / 'fold0'])
    with pytest.raises(InputError, match='file not found'):
        run.read_extra_training_file(tmp_path / 'absent.json')
    (tmp_path / 'broken.json').write_text('{"images": [{"id": 1}]}')
    with pytest.raises(InputError, match=r'broken\.json.*not a COCO JSON'):
        run.read_extra_training_file(tmp_path / 'broken.json')
    write_json_atomic(_coco([1, 2]), tmp_path / 'train.json')
    with pytest.raises(InputError, match=r'absolute\.json.*shares image ids \[7\] with .*other\.json'):
        data.merge_training_annotations([write_json_atomic(_coco([7]), tmp_path / 'other.json'),
                                         tmp_path / 'absolute.json'], tmp_path / 'merged.json', 'x')
    assert not (tmp_path / 'merged.json').exists()


# ------------------------------------------------------------------------------------------ cascade cost
def test_cascade_cost_times_and_counts_the_global_and_the_local_stage(repo_root: Path) -> None:
    """``benchmarks.cascade_cost`` on the tiny cascade: both stages timed and counted, the parameters adding up
    to the model's."""
    import torch
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from benchmarks.cascade_cost import measure
    from cldetection.config_utils import load_config

    config = repo_root / 'cldetection_configs' / 'tiny_cascade_cpu.py'
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cost = measure(config, num_landmarks=38, repeats=1)
    finally:
        torch.set_num_threads(threads)
    for key in ('global', 'local'):
        assert cost[f'train_{key}_s_per_image'] > 0 and cost[f'infer_{key}_ms_per_image'] > 0
        assert cost[f'parameters_{key}_M'] > 0
    assert cost['train_local_patches_s_per_image'] > 0
    init_default_scope('mmpose')
    model = MODELS.build(load_config(config, {'num_landmarks': 38, 'pretrained': None}).model)
    assert cost['patches_per_image'] == model.local.train_cfg['patches_per_image'] and cost['batch_norms_folded']
    assert 1e6 * (cost['parameters_global_M'] + cost['parameters_local_M']) == \
        pytest.approx(sum(p.numel() for p in model.parameters()))


# ------------------------------------------------------------------------- benchmarks.confidence's section
def test_confidence_section_replaces_its_rows_and_keeps_the_other_tables(tmp_path: Path) -> None:
    from benchmarks.confidence import CALIBRATION_COLUMNS, SECTION_END, SECTION_START, SIGNAL_COLUMNS, \
        _section_rows, update_results

    results_md = tmp_path / 'RESULTS.md'
    results_md.write_text('# Benchmark results\n\nintro\n\n## Cascade ablation (issue #9)\n\n| a |\n| --- |\n')

    def row(columns, test_set, value):
        return {c: value for c in columns} | {'Test set': test_set}

    update_results(results_md, {'Signals': (SIGNAL_COLUMNS, [row(SIGNAL_COLUMNS, 'A', '1')]),
                                'Calibrations': (CALIBRATION_COLUMNS, [row(CALIBRATION_COLUMNS, 'A', '2')])})
    update_results(results_md, {'Signals': (SIGNAL_COLUMNS, [row(SIGNAL_COLUMNS, 'A', '3'),
                                                             row(SIGNAL_COLUMNS, 'B', '4')])})
    lines = results_md.read_text().splitlines()
    assert lines.index(SECTION_START) < lines.index(SECTION_END) < lines.index('## Cascade ablation (issue #9)')
    signals = _section_rows(lines, '### Signals')
    assert [(r['Test set'], r['Signal']) for r in signals] == [('A', '3'), ('B', '4')]  # A replaced, B added
    assert [r['Signals'] for r in _section_rows(lines, '### Calibrations')] == ['2']  # kept as it was


def test_cross_calibration_never_calibrates_on_the_image_it_predicts() -> None:
    import numpy as np

    from benchmarks.confidence import cross_calibrated
    from cldetection.calibrate import LabelledPredictions

    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, (12, 19, 2))
    signals = {'disagreement_mm': rng.gamma(2.0, 0.5, (12, 19))}

    def radii(points):
        predictions = LabelledPredictions(points, truth, np.full(12, 0.1), signals, [f'{i}.png' for i in range(12)],
                                          np.full((12, 2), 100))
        radius, _, calibrations = cross_calibrated(predictions, ('disagreement_mm',))
        assert len(calibrations) == 2 and all(c.images['fit'] + c.images['conformal'] == 6 for _, c in calibrations)
        return radius

    points = truth + rng.normal(0, 3, truth.shape)
    before = radii(points)
    points[0] += 500.0  # image 0 (even half) now errs by metres: only the odd images' radii may change
    after = radii(points)
    np.testing.assert_allclose(after[0::2], before[0::2])
    assert (after[1::2] > before[1::2]).any()


# ------------------------------------------------------------------------------------------ speed per CPU class
def test_cpu_class_reads_runs_and_engine_cells() -> None:
    from benchmarks.summary import CPU_CLASSES, cpu_class

    assert cpu_class('AMD EPYC (AVX512, bf16), 2 cores') == CPU_CLASSES[0]
    assert cpu_class('Intel Xeon, 2 cores (AVX2 yes, AVX-512 yes, AVX512-BF16 no, AMX yes)') == CPU_CLASSES[0]
    assert cpu_class('Intel Xeon (AVX512), 2 cores') == CPU_CLASSES[1]
    assert cpu_class('AMD EPYC, 2 cores (AVX2 yes, AVX-512 no, AVX512-BF16 no, AMX no)') == CPU_CLASSES[2]
    assert cpu_class('AMD EPYC (AVX2), 2 cores') == CPU_CLASSES[2]
    assert cpu_class('AMD EPYC, 2 cores') == ''  # recorded before the vector unit was: no class


def test_speed_table_takes_each_class_s_latest_full_training_and_engine_rows(tmp_path: Path) -> None:
    from benchmarks import engine_speed, summary

    def run(hardware: str, budget: str, speed: str, infer: str) -> dict:
        return _row('cascade_hrnet-s_cpu', 'fold 0 of 5', '1.800', '70.00', speed=speed) | {
            'Budget': budget, 'Hardware': hardware, 'Infer ms/img': infer}

    rows = [run('AMD EPYC (AVX2), 2 cores', 'config, train+valid', '1.00', '500'),
            run('AMD EPYC (AVX2), 2 cores', 'config, train+valid (tests beside it)', '2.00', '400'),
            run('AMD EPYC (AVX2), 2 cores', 'config, train+valid, 77/154 img', '9.00', '100'),  # another training set
            run('Intel Xeon (AVX512, bf16), 2 cores', 'config, train+valid', '5.00', '150')]
    results_md = tmp_path / 'RESULTS.md'
    results_md.write_text('# Benchmark results\n\n## Cascade ablation\n')
    cpu = 'AMD EPYC, 2 cores (AVX2 yes, AVX-512 no, AVX512-BF16 no, AMX no)'
    for seconds, engine in (('0.400', 'pytorch (float32, batch norms folded)'), ('0.300', 'onnxruntime'),
                            ('0.200', 'onnxruntime-int8'), ('0.250', 'onnxruntime')):
        engine_speed.append_section_rows(results_md, [{'CPU': cpu, 'Engine': engine, 'Images': '20',
                                                       's/image': seconds, 'Peak RSS MiB': '700'}])
    engine_rows = summary.read_engine_rows(results_md)
    assert len(engine_rows) == 4  # appended, the section written once
    lines = summary.speed_lines(rows, engine_rows)
    table = {line.split(' | ')[0].strip('| '): line.split(' | ') for line in lines if line.startswith('| ')}
    avx2 = table['AVX2 only']
    assert avx2[1] == '51.3 (2.00)'  # 154 images x 40 epochs / 2 img/s: the latest full run
    assert 'tests beside it' in avx2[3] and avx2[4] == '0.400'
    assert avx2[5] == '0.400 / 0.250 / 0.200'  # the latest row of each engine
    assert table['bfloat16 hardware (AVX512-BF16 or AMX)'][1] == '20.5 (5.00)'
    assert table['bfloat16 hardware (AVX512-BF16 or AMX)'][5] == '-- / -- / --'
    assert table['AVX-512 without bfloat16'][1] == '--'


def test_int8_section_replaces_rows_of_the_same_test_set_and_engine(tmp_path: Path) -> None:
    from benchmarks.int8_accuracy import COLUMNS, SECTION_END, SECTION_START, update_results
    from benchmarks.results import parse_table

    results_md = tmp_path / 'RESULTS.md'
    results_md.write_text('# Benchmark results\n\n## Cascade ablation\n')

    def row(test_set: str, engine: str, mre: str) -> dict:
        return {c: '' for c in COLUMNS} | {'Test set': test_set, 'Engine': engine, 'MRE': mre}

    update_results(results_md, [row('A', 'onnxruntime', '1.000'), row('A', 'onnxruntime-int8', '1.010')])
    update_results(results_md, [row('A', 'onnxruntime-int8', '1.005'), row('B', 'onnxruntime', '2.000')])
    lines = results_md.read_text().splitlines()
    assert lines.index(SECTION_START) < lines.index(SECTION_END) < lines.index('## Cascade ablation')
    table = parse_table([line for line in lines if line.startswith('|')])
    assert [(r['Test set'], r['Engine'], r['MRE']) for r in table] == [
        ('A', 'onnxruntime', '1.000'), ('A', 'onnxruntime-int8', '1.005'), ('B', 'onnxruntime', '2.000')]


def test_selective_prediction_ceiling_is_the_sdr_of_the_smallest_real_errors() -> None:
    import numpy as np

    from benchmarks.confidence import evaluate
    from cldetection.calibrate import LabelledPredictions

    rng = np.random.default_rng(1)
    truth = rng.uniform(20, 80, (12, 19, 2))
    points = truth + rng.normal(0, 20, truth.shape)  # errors of ~2.5 mm at 0.1 mm per pixel
    predictions = LabelledPredictions(points, truth, np.full(12, 0.1), {'local_score': rng.uniform(size=(12, 19))},
                                      [f'{i}.png' for i in range(12)], np.full((12, 2), 100))
    result = evaluate(predictions, ('local_score',))
    errors = np.sort(predictions.errors_mm.ravel())
    assert result.sdr2_ceiling == np.mean(errors[:int(round(0.8 * errors.size))] <= 2.0)
    assert result.sdr2_ceiling >= result.sdr2_least_uncertain and result.sdr2_ceiling >= result.sdr2
