"""The coarse-to-fine cascade (cldetection.cascade, cldetection.patch_stage) on tiny data: prediction, the local
stage's refinement and training patches, speed settings, and checkpoints of earlier versions."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY_CASCADE, dots, peak_near  # the trained_cascade fixture (conftest) trains TINY_CASCADE
from test_train import one_torch_thread  # noqa: F401

from cldetection.geometry import from_reduced, to_reduced

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _tiny_cfg():
    from mmengine.registry import init_default_scope

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    return load_config(TINY_CASCADE)


def _build(cfg):
    from mmpose.registry import MODELS

    return MODELS.build(cfg.model)


def _tiny_model(**local):
    """The tiny cascade's model (random weights, eval mode), its local stage's settings updated by ``local``."""
    cfg = _tiny_cfg()
    cfg.model.local.update(local)
    return _build(cfg).eval()


# ------------------------------------------------------------------------------ the model, end to end

def test_step4_scores_the_refined_landmarks_and_can_score_the_global_stage(trained_cascade, tmp_path) -> None:
    from cldetection.evaluate import evaluate
    from cldetection.visualize import read_per_image_errors

    coco, checkpoint = trained_cascade
    refined = evaluate(TINY_CASCADE, checkpoint, split='test', cfg_options={'data_root': str(coco)},
                       out_dir=tmp_path / 'refined')
    coarse = evaluate(TINY_CASCADE, checkpoint, split='test', out_dir=tmp_path / 'coarse',
                      cfg_options={'data_root': str(coco), 'model.test_cfg.local': False})
    refined_errors = read_per_image_errors(refined.out_dir / 'per_image.csv')
    coarse_errors = read_per_image_errors(coarse.out_dir / 'per_image.csv')
    assert refined_errors.shape == coarse_errors.shape == (2, 38)
    assert not np.allclose(refined_errors, coarse_errors)  # the local stage moved the estimates
    assert refined.metrics['MRE'] != coarse.metrics['MRE']


def test_step5_predictor_equals_the_dataset_pipeline(trained_cascade, tmp_path) -> None:
    """The predictor (step 5, the container) and MMPose's inference on step 2's PNG give the same cascade output."""
    from mmpose.apis import inference_topdown

    from cldetection.dataset import CephalometricDataset
    from cldetection.predict import LandmarkPredictor

    coco, checkpoint = trained_cascade
    predictor = LandmarkPredictor(TINY_CASCADE, checkpoint, device='cpu')
    dataset = CephalometricDataset(data_root=str(coco), ann_file='test.json', data_prefix=dict(img='images/'),
                                   test_mode=True, pipeline=[])
    info = dataset.get_data_info(0)
    image_bgr = cv2.imread(info['img_path'], cv2.IMREAD_COLOR)
    predicted = predictor.predict_images([image_bgr[:, :, ::-1]])[0]
    reference = inference_topdown(predictor.model, info['img_path'], bboxes=info['bbox'], bbox_format='xyxy')[0]
    np.testing.assert_allclose(predicted, reference.pred_instances.keypoints[0], atol=1e-4)
    assert reference.pred_instances.coarse_keypoints.shape == (1, 38, 2)
    # the local stage's signals of each landmark's error (cldetection.confidence), finite and non-negative spreads
    signals = predictor.predict_with_signals([image_bgr[:, :, ::-1]])[0]
    assert signals['local_spread'].shape == signals['local_scores'].shape == (38,)
    assert np.isfinite(signals['local_spread']).all() and (signals['local_spread'] >= 0).all()
    np.testing.assert_allclose(signals['coarse_keypoints'], reference.pred_instances.coarse_keypoints[0], atol=1e-4)


def test_cascade_without_source_image_in_the_pipeline_says_what_is_missing(trained_cascade) -> None:
    from mmpose.apis import inference_topdown, init_model

    from cldetection.config_utils import load_config

    coco, checkpoint = trained_cascade
    cfg = load_config(TINY_CASCADE)
    cfg.test_dataloader.dataset.pipeline = [t for t in cfg.test_dataloader.dataset.pipeline
                                            if t['type'] != 'KeepSourceImage']
    model = init_model(cfg, str(checkpoint), device='cpu')
    image = next((coco / 'images').glob('*.png'))
    with pytest.raises(KeyError, match='KeepSourceImage'):
        inference_topdown(model, str(image))


def test_refine_keeps_a_point_whose_patch_heatmap_is_flat_or_diverges(monkeypatch) -> None:
    """Seen on real data: an unlearned channel's flat heatmap sent the sub-pixel fit 18 m away."""
    import torch

    stage = _tiny_model().local
    source = np.random.default_rng(0).integers(0, 255, (300, 200), dtype=np.uint8)
    points = np.array([[100.0, 200.0], [300.0, 150.0], [50.0, 500.0]] + [[200.0, 300.0]] * 35)
    monkeypatch.setattr(stage, 'forward', lambda inputs: torch.zeros(len(inputs), 38, 16, 16))
    kept, _, _ = stage.refine(points, source, 2)
    np.testing.assert_array_equal(kept, points)

    def diverging(heatmaps):
        return np.tile([[[1e7, -3e6]]], (1, len(heatmaps), 1)), np.full((1, len(heatmaps)), 0.01)

    monkeypatch.setattr(stage, 'forward', lambda inputs: torch.rand(len(inputs), 38, 16, 16))
    monkeypatch.setattr(stage.head.decoder, 'decode', diverging)
    kept, _, _ = stage.refine(points, source, 2)
    np.testing.assert_array_equal(kept, points)


def test_refine_with_test_time_shifts_averages_the_cuts_that_find_the_landmark(monkeypatch) -> None:
    """``local.test.shift``: four more patches moved by shift x patch side; estimates of the cuts that see the
    landmark are averaged, a cut that loses it (flat heatmap) does not count."""
    import torch

    stage = _tiny_model(test=dict(iterations=1, shift=0.25)).local
    codec = stage.head.decoder
    factor, extent = 2, stage.extent(2)  # 64 reduced pixels per patch side; the shift: 16
    dot = np.array([100.0, 150.0])  # (x, y) in the reduced source
    source = np.zeros((300, 200), dtype=np.uint8)
    source[150, 100] = 255
    cuts_seeing_the_dot = []

    def brightest_pixel_network(inputs: torch.Tensor) -> torch.Tensor:
        """A stand-in local network: every channel peaks on the patch's brightest pixel (flat if none)."""
        heatmaps = np.zeros((len(inputs), 38) + tuple(codec.heatmap_size[::-1]), dtype=np.float32)
        for i, patch in enumerate(inputs[:, 0].numpy()):
            if patch.max() > patch.min():
                y, x = np.unravel_index(np.argmax(patch), patch.shape)
                heatmaps[i] = codec.encode(np.full((1, 38, 2), (x, y), dtype=np.float32), np.ones((1, 38)))['heatmaps']
                cuts_seeing_the_dot.append(i)
        return torch.from_numpy(heatmaps)

    monkeypatch.setattr(stage, 'forward', brightest_pixel_network)
    near = from_reduced(dot + [3.0, -2.0], factor)  # every cut sees the dot
    only_plus_x = from_reduced(dot - [34.0, 0.0], factor)  # 34 > 32 (half a patch); 34 - 16 < 32: only +x sees it
    far = np.array([[20.0, 20.0]] * 36)  # no cut sees it: kept
    points = np.concatenate([near[None], only_plus_x[None], far])
    refined, _, _ = stage.refine(points, source, factor)
    assert extent == 64
    np.testing.assert_allclose(refined[0], from_reduced(dot, factor), atol=2.0)
    np.testing.assert_allclose(refined[1], from_reduced(dot, factor), atol=2.0)
    np.testing.assert_array_equal(refined[2:], far)
    assert len(cuts_seeing_the_dot) == 5 + 1  # landmark 0 on all five cuts, landmark 1 on one


def test_unknown_local_stage_settings_are_refused() -> None:
    for local, message in ((dict(train=dict(jitter=1.0)), r"unknown local.train keys \['jitter'\]"),
                           (dict(test=dict(neighbours=0.5)), r"unknown local.test keys \['neighbours'\]"),
                           (dict(patch_size=(32, 32)), 'needs a decoder whose input_size is the patch_size')):
        with pytest.raises(ValueError, match=message):
            _tiny_model(**local)
    cfg = _tiny_cfg()  # a config of earlier versions: the local stage under its old name
    cfg.model.refine = cfg.model.pop('local')
    with pytest.raises(ValueError, match=r"unknown arguments \['refine'\]; the local stage is model.local"):
        _build(cfg)


def _train_and_score_tiny_cascade(folder: Path, *cfg_options: str, config: Path = TINY_CASCADE) -> str:
    """Step 3 (the command line) trains the tiny cascade (or ``config``) 1 epoch with ``cfg_options``, step 4
    scores the checkpoint through the config step 3 saved; returns that config's text."""
    from cldetection.evaluate import evaluate
    from test_train import STEP3, _env, make_tiny_coco

    coco = make_tiny_coco(folder)
    work_dir = folder / 'work'
    proc = subprocess.run([sys.executable, str(STEP3), str(config), '--work-dir', str(work_dir), '--seed', '0',
                           '--cfg-options', f'data_root={coco}', 'train_dataloader.batch_size=2',
                           'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', *cfg_options],
                          cwd=folder, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'loss_local' in next(work_dir.glob('*/*.log')).read_text()  # the local stage trained
    saved = work_dir / config.name
    checkpoint = next(work_dir.glob('best_MRE_epoch_*.pth'))
    result = evaluate(saved, checkpoint, split='test', cfg_options={'data_root': str(coco)}, out_dir=folder / 't')
    assert np.isfinite(result.metrics['MRE'])
    return saved.read_text()


def test_flip_augmentation_flips_the_local_stage_source_with_the_landmarks() -> None:
    """``cascade_flip``: RandomFlip comes before KeepSourceImage, so the patches are cut from the mirrored
    radiograph where the mirrored landmarks are (every landmark maps to itself: no left/right pairs)."""
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    cfg = load_config(Path(__file__).resolve().parents[1] / 'benchmarks' / 'ablations' / 'cascade_flip.py')
    steps = [dict(t) for t in cfg.train_dataloader.dataset.pipeline]
    names = [t['type'] for t in steps]
    assert names.index('RandomFlip') < names.index('KeepSourceImage')
    steps = steps[names.index('GetBBoxCenterScale'):names.index('KeepSourceImage') + 1]
    for t in steps:
        if t['type'] == 'RandomFlip':
            t['prob'] = 1.0
        if t['type'] == 'RandomBBoxTransform':
            t.update(shift_prob=0.0, scale_prob=0.0, rotate_prob=0.0)
    image = np.zeros((200, 160, 3), dtype=np.uint8)
    keypoints = np.array([[[30.0, 50.0], [120.0, 170.0]]], dtype=np.float32)
    for x, y in keypoints[0].astype(int):
        image[y - 2:y + 2, x - 2:x + 2] = 255
    results = Compose(steps)(dict(img=image, img_shape=(200, 160), ori_shape=(200, 160),
                                  bbox=np.array([[0, 0, 160, 200]], dtype=np.float32), bbox_score=np.ones(1),
                                  keypoints=keypoints.copy(), keypoints_visible=np.ones((1, 2), dtype=np.float32),
                                  flip_indices=[0, 1]))
    assert results['flip']
    np.testing.assert_allclose(results['keypoints'][0], [[160 - 1 - 30, 50], [160 - 1 - 120, 170]], atol=1.0)
    source = results['source_img']
    for x, y in to_reduced(results['keypoints'][0], 2):
        assert source[int(round(y)) - 1:int(round(y)) + 1, int(round(x)) - 1:int(round(x)) + 1].max() > 100


# ------------------------------------------------------------------------------ speed settings (cldetection.precision)
def test_bf16_is_used_where_asked_and_auto_follows_the_hardware(monkeypatch) -> None:
    from cldetection import precision

    assert precision.uses_bf16('bf16', 'cpu') and not precision.uses_bf16('fp32', 'cpu')
    monkeypatch.setattr(precision, 'cpu_has_bf16_hardware', lambda: True)
    assert precision.uses_bf16('auto', 'cpu')
    monkeypatch.setattr(precision, 'cpu_has_bf16_hardware', lambda: False)
    assert not precision.uses_bf16('auto', 'cpu')
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto, got 'fp16'"):
        precision.uses_bf16('fp16', 'cpu')


@pytest.mark.parametrize('avx512_bf16, amx, expected', [(True, False, True), (False, True, True),
                                                        (False, False, False)])
def test_bf16_hardware_is_avx512_bf16_or_amx(monkeypatch, avx512_bf16, amx, expected) -> None:
    import torch

    from cldetection import precision

    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: amx)
    assert precision.cpu_has_bf16_hardware() is expected
    monkeypatch.delattr(torch.cpu, '_is_avx512_bf16_supported')  # a torch without the private probe
    assert precision.cpu_has_bf16_hardware() is amx


def test_cascade_refuses_an_unknown_precision() -> None:
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    cfg = load_config(TINY_CASCADE)
    cfg.model.precision = 'half'
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto, got 'half'"):
        MODELS.build(cfg.model)


def test_precision_can_differ_between_training_and_prediction() -> None:
    """dict(train='fp32', test='bf16'): training iterations in float32, validation and prediction in bfloat16."""
    import torch
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    cfg = load_config(TINY_CASCADE)
    cfg.model.precision = dict(train='fp32', test='bf16')
    model = MODELS.build(cfg.model)
    inputs = torch.randn(2, 3, 64, 64)
    from cldetection.precision import run_backbone

    stage_inputs = {}
    for mode in ('train', 'eval'):
        getattr(model, mode)()
        stage_inputs[mode] = {model.extract_feat(inputs)[0].dtype, model.local(inputs).dtype}
    assert stage_inputs == {'train': {torch.float32}, 'eval': {torch.float32}}  # what the heads give: float32
    seen = []  # what the backbones themselves compute in
    for backbone in (model.backbone, model.local.backbone):
        backbone.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    for mode in ('train', 'eval'):
        getattr(model, mode)()
        model.extract_feat(inputs)
        model.local(inputs)
    assert seen == [torch.float32, torch.float32, torch.bfloat16, torch.bfloat16]
    assert run_backbone(model.backbone, inputs, 'bf16', channels_last=False)[0].dtype == torch.float32
    for bad in (dict(train='fp32'), dict(train='fp32', test='fp32', val='bf16'), dict(train='fp32', test='half')):
        cfg.model.precision = bad
        with pytest.raises(ValueError, match='precision must be one of fp32, bf16, auto'):
            MODELS.build(cfg.model)


def _predictor_with(checkpoint: Path, folder: Path, fold_batch_norms: bool = True, **model: object):
    """Step 5's predictor for the tiny cascade's checkpoint through a config that changes ``model`` settings."""
    from cldetection.predict import LandmarkPredictor

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / 'tiny_cascade_variant.py'
    config.write_text(f'_base_ = {str(TINY_CASCADE)!r}\nmodel = dict({", ".join(f"{k}={v!r}" for k, v in model.items())})\n')
    return LandmarkPredictor(config, checkpoint, device='cpu', fold_batch_norms=fold_batch_norms)


def _test_image(coco: Path) -> np.ndarray:
    from cldetection.dataset import CephalometricDataset

    dataset = CephalometricDataset(data_root=str(coco), ann_file='test.json', data_prefix=dict(img='images/'),
                                   test_mode=True, pipeline=[])
    return cv2.imread(dataset.get_data_info(0)['img_path'], cv2.IMREAD_COLOR)[:, :, ::-1]


def test_channels_last_layout_predicts_what_the_default_layout_predicts(trained_cascade, tmp_path) -> None:
    """One checkpoint, both memory layouts: the same landmarks (the same arithmetic in another order)."""
    import torch

    coco, checkpoint = trained_cascade
    image = _test_image(coco)
    fast = _predictor_with(checkpoint, tmp_path / 'nhwc', channels_last=True, precision='fp32')
    plain = _predictor_with(checkpoint, tmp_path / 'nchw', channels_last=False, precision='fp32')
    conv = fast.model.local.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert plain.model.local.backbone.conv1.weight.is_contiguous()
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 160, 128) * 50  # the global input (h x w), normalised
    patches = np.random.default_rng(0).integers(0, 256, (38, 1, 64, 64), dtype=np.uint8)
    with torch.no_grad():
        for model in (fast.model, plain.model):
            model.heatmaps = (model.head.forward(model.extract_feat(inputs)), model.local(model.local.normalise(patches)))
    for fast_maps, plain_maps in zip(fast.model.heatmaps, plain.model.heatmaps):
        assert fast_maps.is_contiguous() and fast_maps.dtype == torch.float32
        torch.testing.assert_close(fast_maps, plain_maps, rtol=1e-4, atol=1e-5)
    # Decoded, most points do not move. The 2-epoch model's heatmaps are flat: where two maxima tie to within
    # the float rounding, the argmax may flip between layouts (one point of 38 moved 15.6 px under Python 3.13's
    # torch build), so the bound is on nearly all points, not on every one
    moved = np.linalg.norm(fast.predict_images([image]) - plain.predict_images([image]), axis=-1)
    assert np.median(moved) < 1e-3 and np.mean(moved < 1.0) >= 0.9


def test_folded_batch_norms_predict_what_the_batch_norms_predict(trained_cascade, tmp_path) -> None:
    """Step 5 folds every batch norm into its convolution: no batch norm is left, the layout stays channels-last,
    and the heatmaps and landmarks are those of the unfolded model up to float rounding."""
    import torch

    coco, checkpoint = trained_cascade
    image = _test_image(coco)
    folded = _predictor_with(checkpoint, tmp_path / 'folded', precision='fp32')
    plain = _predictor_with(checkpoint, tmp_path / 'plain', fold_batch_norms=False, precision='fp32')
    norms = [m for m in plain.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) > 20  # the running statistics the folding has to carry over are not trivial
    assert not any(torch.allclose(m.running_var, torch.ones_like(m.running_var)) for m in norms[:5])
    assert not [m for m in folded.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    conv = folded.model.local.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 160, 128) * 50
    patches = np.random.default_rng(0).integers(0, 256, (38, 1, 64, 64), dtype=np.uint8)
    with torch.no_grad():
        for model in (folded.model, plain.model):
            model.heatmaps = (model.head.forward(model.extract_feat(inputs)), model.local(model.local.normalise(patches)))
    for folded_maps, plain_maps in zip(folded.model.heatmaps, plain.model.heatmaps):
        torch.testing.assert_close(folded_maps, plain_maps, rtol=1e-4, atol=1e-5)
    # as for the layouts above: the 2-epoch model's flat heatmaps may flip a tied argmax, so nearly all points
    moved = np.linalg.norm(folded.predict_images([image]) - plain.predict_images([image]), axis=-1)
    assert np.median(moved) < 1e-3 and np.mean(moved < 1.0) >= 0.9


def test_folding_batch_norms_refuses_a_model_in_training_mode() -> None:
    import torch

    from cldetection.precision import fold_batch_norms

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match='training mode'):
        fold_batch_norms(model)
    model[1].running_mean.fill_(2.0)
    model[1].running_var.fill_(4.0)
    x = torch.randn(1, 3, 8, 8)
    expected = model.eval()(x)
    fold_batch_norms(model)
    assert isinstance(model[1], torch.nn.Identity)
    torch.testing.assert_close(model(x), expected)


def test_bf16_runs_both_backbones_in_bfloat16_and_the_rest_in_float32(trained_cascade, tmp_path) -> None:
    import torch

    coco, checkpoint = trained_cascade
    image = _test_image(coco)
    predictor = _predictor_with(checkpoint, tmp_path / 'bf16', precision='bf16')
    seen: dict[str, set] = {}

    def record(name):
        def hook(module, args, output):
            outputs = output if isinstance(output, (tuple, list)) else (output, )
            seen.setdefault(name, set()).update(str(o.dtype) for o in outputs)
        return hook

    modules = {'backbone': predictor.model.backbone, 'local.backbone': predictor.model.local.backbone,
               'head': predictor.model.head, 'local.head': predictor.model.local.head}
    for name in ('backbone', 'local.backbone'):
        modules[name].register_forward_hook(record(name))
    for name in ('head', 'local.head'):  # called as head.forward / head.predict: no module hooks
        head = modules[name]
        head.forward = (lambda forward, hook: lambda feats: (hook(None, None, feats), forward(feats))[1])(
            head.forward, record(name))
    points = predictor.predict_images([image])
    assert seen == {'backbone': {'torch.bfloat16'}, 'local.backbone': {'torch.bfloat16'},
                    'head': {'torch.float32'}, 'local.head': {'torch.float32'}}
    assert points.dtype == np.float64 and np.isfinite(points).all()
    assert predictor.model.backbone.conv1.weight.dtype == torch.float32  # autocast: the weights stay float32


def test_a_training_step_in_bf16_gives_finite_losses_and_gradients(trained_cascade) -> None:
    """``model.precision=bf16``: one training step of both stages on samples of the training pipeline gives finite
    losses of both stages and finite gradients, the backbones in bfloat16 autocast.
    (In-process: step 3 itself is tested in float32; bfloat16 is 7x slower on a CPU without it in hardware.)"""
    import torch
    from mmengine.dataset import pseudo_collate
    from mmpose.registry import DATASETS

    from cldetection.config_utils import set_data_root

    coco, _ = trained_cascade
    cfg = _tiny_cfg()
    cfg.model.precision = 'bf16'
    set_data_root(cfg, coco)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    model = _build(cfg).train()
    np.random.seed(0)
    data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert {'loss_kpt', 'loss_local'} <= set(losses) and all(torch.isfinite(v).all() for v in losses.values())
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    grads = [p.grad for p in model.local.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_step4_scores_a_checkpoint_trained_with_an_ema_hook(tmp_path) -> None:
    """A config with MMEngine's EMAHook (as RTMPose's and benchmarks/ablations/cascade_ema.py): step 3 trains,
    step 4 scores the checkpoint (it failed with "'EMAHook' object has no attribute 'ema_model'") with the
    averaged weights the checkpoint's state_dict holds, exactly as a checkpoint holding only those weights (what
    step 5 loads)."""
    import torch

    from cldetection.evaluate import evaluate

    config = tmp_path / 'tiny_ema.py'
    config.write_text(f"_base_ = {str(TINY_CASCADE)!r}\n"
                      "custom_hooks = [dict(type='EMAHook', momentum=0.3, update_buffers=True)]\n")
    saved = _train_and_score_tiny_cascade(tmp_path, config=config)
    assert "type='EMAHook'" in saved
    checkpoint = next((tmp_path / 'work').glob('best_MRE_epoch_*.pth'))
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    raw = state['ema_state_dict']  # (MMEngine swaps: the trained weights here, the average in state_dict)
    assert any(not torch.equal(raw[f'module.{k}'], v) for k, v in state['state_dict'].items()
               if v.dtype.is_floating_point)
    plain = tmp_path / 'plain.pth'
    torch.save({'state_dict': state['state_dict'], 'meta': state.get('meta', {})}, plain)
    coco = tmp_path / 'coco'  # (made by _train_and_score_tiny_cascade)
    scores = [evaluate(tmp_path / 'work' / config.name, path, split='test', cfg_options={'data_root': str(coco)},
                       out_dir=tmp_path / name).metrics['MRE'] for path, name in ((checkpoint, 'a'), (plain, 'b'))]
    assert scores[0] == scores[1]



# ------------------------------------------------------------------------------ the local stage's training patches
def dotted_cascade_sample(seed: int, low: float, high: float, min_distance: float, shape: tuple[int, int],
                          blur: float):
    """A cascade training sample of 38 landmarks drawn uniformly in [low, high) radiograph pixels, at least
    ``min_distance`` apart, each a blurred dot on the sample's factor-2 source image (``shape``)."""
    from mmengine.structures import InstanceData
    from mmpose.structures import PoseDataSample

    rng = np.random.default_rng(seed)
    keypoints = np.zeros((0, 2))
    while len(keypoints) < 38:
        point = rng.uniform(low, high, 2)
        if len(keypoints) == 0 or np.linalg.norm(keypoints - point, axis=1).min() > min_distance:
            keypoints = np.vstack([keypoints, point])
    source = np.clip(dots(shape, keypoints / 2, blur=blur) * 3, 0, 255).astype(np.uint8)
    sample = PoseDataSample(metainfo=dict(source_img=source, source_factor=2, spacing=0.1))
    sample.gt_instances = InstanceData(keypoints=keypoints[None], keypoints_visible=np.ones((1, 38)))
    return sample


def test_training_patches_put_each_target_peak_on_its_landmark() -> None:
    """Jittered, rotated, rescaled training patches: the decoded target of every landmark inside a patch sits on
    that landmark's dot in the patch, and the patch's own landmark is inside it."""
    stage = _tiny_model(train=dict(intensity=dict(prob=0.0), patches_per_image=4)).local
    sample = dotted_cascade_sample(3, 100, 500, 24, (300, 300), blur=1.5)
    np.random.seed(0)
    checked = 0
    for _ in range(10):
        patches, heatmaps, weights = stage.training_patches(sample)
        assert patches.shape == (4, 1, 64, 64) and patches.dtype == np.uint8 and heatmaps.shape == (4, 38, 16, 16)
        for patch, heatmap, weight in zip(patches[:, 0], heatmaps, weights):
            decoded, _ = stage.head.decoder.decode(heatmap)
            for k in np.flatnonzero(weight > 0):
                point = decoded[0, k]
                if 12 <= point[0] < 52 and 12 <= point[1] < 52:  # (the whole window inside the patch)
                    assert np.linalg.norm(peak_near(patch, point, radius=4) - point) < 1.0
                    checked += 1
    assert checked >= 40


def test_training_patches_need_the_pixel_spacing() -> None:
    from mmpose.structures import PoseDataSample

    sample = dotted_cascade_sample(3, 100, 500, 24, (300, 300), blur=1.5)
    bare = PoseDataSample(metainfo={k: v for k, v in sample.metainfo.items() if k != 'spacing'})
    bare.gt_instances = sample.gt_instances
    with pytest.raises(KeyError, match='need "spacing"'):
        _tiny_model().local.training_patches(bare)


# ------------------------------------------------------------------------------ nothing changes for users
GOLDEN_STEP5 = Path(__file__).resolve().parent / 'data' / 'step5_untrained_tiny_cascade.json'


def test_step5_writes_the_json_of_earlier_versions_for_a_fixed_checkpoint(tmp_path) -> None:
    """The tiny cascade's initial weights (seed 0) on a 2-slice stack: step 5's JSON is the one the code wrote
    before the cascade was split into cldetection.cascade / patch_stage / geometry (commit 8b3138f, written by it
    to tests/data). The local stage moves the points (it is not bypassed), and the checkpoint's local stage is
    stored under the old names ``refine_backbone`` / ``refine_head`` too, which still load."""
    import json

    import torch

    from conftest import make_challenge_stack
    from cldetection.checkpoints import save_untrained_checkpoint
    from cldetection.predict import predict_stack_to_json

    stack, _ = make_challenge_stack(tmp_path / 'challenge', num_slices=2, seed=3)
    checkpoint = save_untrained_checkpoint(TINY_CASCADE, tmp_path / 'untrained.pth', seed=0)
    saved = torch.load(checkpoint, map_location='cpu', weights_only=False)
    legacy = tmp_path / 'legacy.pth'
    torch.save({**saved, 'state_dict': {k.replace('local.backbone.', 'refine_backbone.').replace(
        'local.head.', 'refine_head.'): v for k, v in saved['state_dict'].items()}}, legacy)
    assert any(k.startswith('refine_backbone.') for k in torch.load(legacy, weights_only=False)['state_dict'])
    expected = json.loads(GOLDEN_STEP5.read_text())
    for weights in (checkpoint, legacy):
        predict_stack_to_json(TINY_CASCADE, weights, stack, tmp_path / f'{weights.stem}.json', device='cpu',
                              progress=False)
        written = json.loads((tmp_path / f'{weights.stem}.json').read_text())
        assert [p['name'] for p in written['points']] == [p['name'] for p in expected['points']]
        np.testing.assert_allclose([p['point'] for p in written['points']], [p['point'] for p in expected['points']],
                                   atol=0.05)  # pixels (slice index exact)
    global_only = tmp_path / 'global.py'
    global_only.write_text(f'_base_ = {str(TINY_CASCADE)!r}\nmodel = dict(test_cfg=dict(local=False))\n')
    predict_stack_to_json(global_only, checkpoint, stack, tmp_path / 'global.json', device='cpu', progress=False)
    coarse = np.array([p['point'] for p in json.loads((tmp_path / 'global.json').read_text())['points']])
    moved = np.linalg.norm(coarse[:, :2] - np.array([p['point'] for p in expected['points']])[:, :2], axis=1)
    assert (moved > 0.5).mean() > 0.5  # the local stage refined most points
