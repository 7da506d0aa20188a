"""The coarse-to-fine cascade (cldetection.cascade): geometry of its crops, and the model on tiny data."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY_CASCADE  # the trained_cascade fixture (conftest) trains this config
from test_train import one_torch_thread  # noqa: F401

from cldetection.cascade import (AntiAliasTopdownAffine, KeepSourceImage, area_downscale, cut_patches, from_reduced,
                                 patch_to_image, patch_warp_matrix, to_reduced)

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def test_area_downscale_maps_pixel_centres() -> None:
    image = np.zeros((97, 61), np.uint8)  # not multiples of 4: the trailing rows/columns are cut
    image[40:44, 20:24] = 255  # a 4 x 4 block centred on (21.5, 41.5) in (x, y)
    reduced = area_downscale(image, 4)
    assert reduced.shape == (24, 15)
    ys, xs = np.nonzero(reduced)
    assert (xs.mean(), ys.mean()) == pytest.approx(tuple(to_reduced(np.array([21.5, 41.5]), 4)))
    assert from_reduced(to_reduced(np.array([3.0, 7.0]), 4), 4) == pytest.approx([3.0, 7.0])
    assert area_downscale(image, 1) is image


def _topdown_results(rng: np.random.Generator) -> dict:
    height, width = 2400, 1935
    # smooth content, so that area averaging and bilinear sampling agree up to aliasing
    yy, xx = np.mgrid[0:height, 0:width]
    img = (127 + 100 * np.sin(xx / 90.0) * np.cos(yy / 130.0)).astype(np.uint8)
    keypoints = np.stack([rng.uniform(0, width, 19), rng.uniform(0, height, 19)], axis=1)[None].astype(np.float32)
    return dict(img=np.stack([img] * 3, axis=-1), bbox_center=np.array([[967.0, 1199.5]], np.float32),
                bbox_scale=np.array([[2128.5, 2640.0]], np.float32), bbox_rotation=np.array([7.0]),
                keypoints=keypoints)


def test_anti_alias_affine_has_topdown_affines_geometry() -> None:
    from mmpose.datasets.transforms import TopdownAffine

    rng = np.random.default_rng(0)
    plain = TopdownAffine(input_size=(256, 320), use_udp=True).transform(_topdown_results(rng))
    smooth = AntiAliasTopdownAffine(input_size=(256, 320), use_udp=True).transform(_topdown_results(
        np.random.default_rng(0)))
    for key in ('transformed_keypoints', 'input_center', 'input_scale', 'bbox_scale', 'bbox_center', 'keypoints'):
        np.testing.assert_allclose(smooth[key], plain[key], rtol=1e-4, atol=1e-2, err_msg=key)
    assert smooth['img'].shape == plain['img'].shape == (320, 256, 3)
    inner = (slice(20, -20), slice(20, -20))  # away from the border, where the cut-off pixels matter
    assert np.abs(smooth['img'][inner].astype(int) - plain['img'][inner].astype(int)).mean() < 2.0


@pytest.mark.parametrize('input_size', [(256, 320), (1024, 1280)])  # reduced 7x first / MMPose's warp alone
def test_anti_alias_affine_records_the_warp_from_image_to_input(input_size) -> None:
    """``input_warp`` maps the image's keypoints where the transform put them (rotation and reduction included),
    and its inverse maps input pixels back onto the image (how the cascade reads the global stage's training
    estimates)."""
    import cv2

    out = AntiAliasTopdownAffine(input_size=input_size, use_udp=True).transform(
        _topdown_results(np.random.default_rng(1)))
    warp = out['input_warp']
    assert warp.shape == (2, 3)
    np.testing.assert_allclose(out['keypoints'][0] @ warp[:, :2].T + warp[:, 2], out['transformed_keypoints'][0],
                               atol=1e-3)
    inverse = cv2.invertAffineTransform(warp)
    np.testing.assert_allclose(out['transformed_keypoints'][0] @ inverse[:, :2].T + inverse[:, 2],
                               out['keypoints'][0], atol=1e-2)


def test_anti_alias_affine_adds_no_keypoints_at_inference() -> None:
    """Without ground truth (step 5) the output has no ``keypoints`` key, as with MMPose's TopdownAffine."""
    results = _topdown_results(np.random.default_rng(0))
    del results['keypoints']
    out = AntiAliasTopdownAffine(input_size=(256, 320), use_udp=True).transform(results)
    assert 'keypoints' not in out and out['img'].shape == (320, 256, 3)


def test_anti_alias_affine_leaves_small_reductions_to_mmpose() -> None:
    results = dict(img=np.zeros((300, 300, 3), np.uint8), bbox_center=np.array([[150.0, 150.0]], np.float32),
                   bbox_scale=np.array([[300.0, 300.0]], np.float32))
    out = AntiAliasTopdownAffine(input_size=(256, 256), use_udp=True).transform(results)
    assert out['input_scale'] == pytest.approx([300.0, 300.0])


def test_patch_round_trip_through_the_udp_codec() -> None:
    """A point warped into a patch, encoded and decoded by MMPose's UDP codec comes back to where it was."""
    from mmpose.codecs import UDPHeatmap

    codec = UDPHeatmap(input_size=(128, 128), heatmap_size=(32, 32), sigma=2)
    rng = np.random.default_rng(1)
    points = rng.uniform(200, 800, (6, 2))
    centers = points + rng.uniform(-30, 30, (6, 2))
    extent = 256.0
    recovered = []
    for point, center in zip(points, centers):
        matrix = patch_warp_matrix(center, extent, 0.0, (128, 128))
        in_patch = matrix @ np.append(point, 1.0)
        encoded = codec.encode(in_patch[None, None], np.ones((1, 1)))
        decoded, _ = codec.decode(encoded['heatmaps'])
        recovered.append(decoded[0, 0])
    np.testing.assert_allclose(patch_to_image(np.array(recovered), centers, extent, (128, 128)), points, atol=0.05)


def test_cut_patches_samples_the_image_around_each_centre() -> None:
    image = np.zeros((400, 300), np.uint8)
    image[100, 50] = 255
    image[300, 250] = 200
    patches, matrices = cut_patches(image, np.array([[50.0, 100.0], [250.0, 300.0]]), 63.0, (64, 64))
    assert patches.shape == (2, 64, 64) and matrices.shape == (2, 2, 3)
    # each bright pixel sits at the centre of its own patch ((64 - 1) / 2 = 31.5: between four pixels)
    for patch, value in zip(patches, (255, 200)):
        assert int(patch[31:33, 31:33].sum()) == pytest.approx(value, abs=2)  # int: no unsigned wrap-around
    empty, _ = cut_patches(image, np.zeros((0, 2)), 63.0, (64, 64))
    assert empty.shape == (0, 64, 64)


def test_keep_source_image_stores_a_reduced_grey_copy() -> None:
    img = np.zeros((40, 30, 3), np.uint8)
    img[..., :] = 90
    out = KeepSourceImage(factor=2).transform({'img': img})
    assert out['source_img'].shape == (20, 15) and out['source_img'].dtype == np.uint8
    assert out['source_factor'] == 2 and int(out['source_img'][3, 3]) == 90
    assert out['img'] is img  # the model input is untouched
    with pytest.raises(ValueError, match='positive integer'):
        KeepSourceImage(factor=1.5)


# ------------------------------------------------------------------------------ the model, end to end


def test_step4_scores_the_refined_landmarks_and_can_score_the_global_stage(trained_cascade, tmp_path) -> None:
    from cldetection.evaluate import evaluate
    from cldetection.visualize import read_per_image_errors

    coco, checkpoint = trained_cascade
    refined = evaluate(TINY_CASCADE, checkpoint, split='test', cfg_options={'data_root': str(coco)},
                       out_dir=tmp_path / 'refined')
    coarse = evaluate(TINY_CASCADE, checkpoint, split='test', out_dir=tmp_path / 'coarse',
                      cfg_options={'data_root': str(coco), 'model.test_cfg.refine': False})
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


def test_oracle_diagnostic_centres_the_patches_on_the_truth(trained_cascade, tmp_path) -> None:
    """benchmarks.cascade_oracle: with no local iteration the prediction is exactly the (jittered) centre."""
    from benchmarks.cascade_oracle import run_test

    coco, checkpoint = trained_cascade
    test = [TINY_CASCADE, checkpoint, str(coco), 'test']
    assert run_test(*test, 0, 0.0, tmp_path)['MRE'] == 0.0  # centres = the truth, nothing refines them
    jittered = run_test(*test, 0, 2.5, tmp_path)['MRE']
    assert 2.5 < jittered < 3.8  # 2 x 38 points: mean radius of a 2-D Gaussian, SD 2.5 mm per axis = 3.13 mm
    as_trained = run_test(*test, 1, None, tmp_path)['MRE']
    from cldetection.evaluate import evaluate
    assert as_trained == pytest.approx(evaluate(TINY_CASCADE, checkpoint, split='test', out_dir=tmp_path / 'step4',
                                                cfg_options={'data_root': str(coco)}).metrics['MRE'])


def test_oracle_per_point_errors_score_global_cascade_and_floor(trained_cascade, tmp_path, capsys) -> None:
    """benchmarks.cascade_oracle --per-landmark: one row per point; its cascade column is step 4's MRE."""
    from benchmarks.cascade_oracle import per_point_errors, print_per_landmark, run_test

    coco, checkpoint = trained_cascade
    test = [TINY_CASCADE, checkpoint, str(coco), 'test']
    untouched = per_point_errors(*test, 0, tmp_path)  # no local pass: cascade = global stage, floor = the truth
    assert untouched.shape[1] == 4 and set(untouched[:, 0]) == set(range(1, 39))
    np.testing.assert_array_equal(untouched[:, 2], untouched[:, 1])
    assert not untouched[:, 3].any()
    refined = per_point_errors(*test, 1, tmp_path)
    np.testing.assert_array_equal(refined[:, 1], untouched[:, 1])
    assert refined[:, 2].mean() == pytest.approx(run_test(*test, 1, None, tmp_path)['MRE'], rel=1e-5)
    print_per_landmark(refined)
    printed = capsys.readouterr().out
    assert f'{len(refined)} points: global stage {refined[:, 1].mean():.3f} mm' in printed
    assert len([line for line in printed.splitlines() if line.split('|')[0].strip().isdigit()]) == 38


def test_patch_reads_own_patch_is_the_cascade_s_one_pass_estimate(trained_cascade, tmp_path) -> None:
    """benchmarks.patch_reads: landmark j read off its own patch is the cascade's one-pass estimate (step 4's
    MRE), every read lies within the patch-centre distance it is made for, and distances are symmetric."""
    from benchmarks.cascade_oracle import per_point_errors
    from benchmarks.patch_reads import MAX_DISTANCE_MM, all_reads

    coco, checkpoint = trained_cascade
    images = all_reads(TINY_CASCADE, checkpoint, str(coco), 'test', tmp_path)
    cascade = per_point_errors(TINY_CASCADE, checkpoint, str(coco), 'test', 1, tmp_path)[:, 2]
    own = np.concatenate([np.linalg.norm(np.diagonal(i['reads']).T - i['truth'], axis=1) * i['spacing']
                          for i in images])
    found = np.isfinite(own)
    assert found.any()
    np.testing.assert_allclose(own[found], cascade[found], rtol=1e-4, atol=1e-4)
    for image in images:
        np.testing.assert_array_equal(image['distance'], image['distance'].T)
        read = np.isfinite(image['reads']).all(axis=2)
        assert (image['distance'][read] <= MAX_DISTANCE_MM).all()


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
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    model = MODELS.build(load_config(TINY_CASCADE).model).eval()
    source = np.random.default_rng(0).integers(0, 255, (300, 200), dtype=np.uint8)
    points = np.array([[100.0, 200.0], [300.0, 150.0], [50.0, 500.0]] + [[200.0, 300.0]] * 35)
    monkeypatch.setattr(model, '_refine_forward', lambda patches, stage=None: torch.zeros(len(patches), 38, 16, 16))
    kept, _ = model.refine(points, source, 2)
    np.testing.assert_array_equal(kept, points)

    def diverging(heatmaps):
        return np.array([[[1e7, -3e6]]]), np.array([[0.01]])

    monkeypatch.setattr(model, '_refine_forward', lambda patches, stage=None: torch.rand(len(patches), 38, 16, 16))
    monkeypatch.setattr(model.refine_head.decoder, 'decode', diverging)
    kept, _ = model.refine(points, source, 2)
    np.testing.assert_array_equal(kept, points)


def test_refine_with_test_time_shifts_averages_the_cuts_that_find_the_landmark(monkeypatch) -> None:
    """``refine.test.shift``: four more patches moved by shift x patch side; estimates of the cuts that see the
    landmark are averaged, a cut that loses it (flat heatmap) does not count."""
    import torch
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    cfg = load_config(TINY_CASCADE)
    cfg.model.refine.test = dict(iterations=1, shift=0.25)
    model = MODELS.build(cfg.model).eval()
    codec = model.refine_head.decoder
    factor, extent = 2, model._extent(2)  # 64 reduced pixels per patch side; the shift: 16
    dot = np.array([100.0, 150.0])  # (x, y) in the reduced source
    source = np.zeros((300, 200), dtype=np.uint8)
    source[150, 100] = 255
    cuts_seeing_the_dot = []

    def brightest_pixel_network(patches: np.ndarray, stage=None) -> torch.Tensor:
        """A stand-in local network: every channel peaks on the patch's brightest pixel (flat if none)."""
        heatmaps = np.zeros((len(patches), 38) + tuple(codec.heatmap_size[::-1]), dtype=np.float32)
        for i, patch in enumerate(patches):
            if patch.max() > 0:
                y, x = np.unravel_index(np.argmax(patch[0]), patch[0].shape)
                heatmaps[i] = codec.encode(np.full((1, 38, 2), (x, y), dtype=np.float32), np.ones((1, 38)))['heatmaps']
                cuts_seeing_the_dot.append(i)
        return torch.from_numpy(heatmaps)

    monkeypatch.setattr(model, '_refine_forward', brightest_pixel_network)
    near = from_reduced(dot + [3.0, -2.0], factor)  # every cut sees the dot
    only_plus_x = from_reduced(dot - [34.0, 0.0], factor)  # 34 > 32 (half a patch); 34 - 16 < 32: only +x sees it
    far = np.array([[20.0, 20.0]] * 36)  # no cut sees it: kept
    points = np.concatenate([near[None], only_plus_x[None], far])
    refined, _ = model.refine(points, source, factor)
    assert extent == 64
    np.testing.assert_allclose(refined[0], from_reduced(dot, factor), atol=2.0)
    np.testing.assert_allclose(refined[1], from_reduced(dot, factor), atol=2.0)
    np.testing.assert_array_equal(refined[2:], far)
    assert len(cuts_seeing_the_dot) == 5 + 1  # landmark 0 on all five cuts, landmark 1 on one


def test_refine_with_neighbours_averages_a_landmark_over_the_patches_of_landmarks_near_it(monkeypatch) -> None:
    """``refine.test.neighbours``: landmark j is also read off the patch of every landmark whose centre lies within
    neighbours x patch side of j's, and the estimates are averaged; landmarks with no neighbour keep their own
    patch's estimate, and heatmap + offset heads are refused."""
    import torch
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    cfg = load_config(TINY_CASCADE)
    factor = 2
    truth = np.array([[100.0, 100.0], [110.0, 100.0]] + [[20.0, 20.0]] + [[170.0, 260.0]] * 35)  # reduced pixels
    bias = np.zeros_like(truth)
    bias[0], bias[1], bias[2] = [4.0, 0.0], [-4.0, 0.0], [0.0, 3.0]  # each patch sees every landmark moved so

    def refined_with(neighbours: float) -> np.ndarray:
        cfg.model.refine.test = dict(iterations=1, neighbours=neighbours)
        model = MODELS.build(cfg.model).eval()
        codec, extent = model.refine_head.decoder, model._extent(factor)
        scale = np.array(codec.input_size) / extent

        def biased_network(patches: np.ndarray, stage=None) -> torch.Tensor:
            """A stand-in local network: patch k (centred on landmark k's truth) places every landmark at its
            truth moved by patch k's bias."""
            in_patch = (truth[None] + bias[:, None] - truth[:, None] + extent / 2) * scale  # [k, j]
            return torch.from_numpy(np.stack([codec.encode(points[None].astype(np.float32),
                                                           np.ones((1, len(truth))))['heatmaps']
                                              for points in in_patch]).astype(np.float32))

        monkeypatch.setattr(model, '_refine_forward', biased_network)
        refined, _ = model.refine(from_reduced(truth, factor), np.zeros((300, 200), np.uint8), factor)
        return to_reduced(refined, factor)

    # (within 1 pixel: the stand-in's mapping into the patch ignores UDP's half-pixel convention)
    alone = refined_with(0.0)
    np.testing.assert_allclose(alone[:3], truth[:3] + bias[:3], atol=1.0)
    fused = refined_with(0.25)  # 16 of 64 reduced pixels: landmarks 0 and 1 (10 apart) see each other
    np.testing.assert_allclose(fused[:2], truth[:2], atol=1.0)  # (+4 and -4) / 2
    np.testing.assert_allclose(fused[2], alone[2], atol=1e-6)  # no landmark within 16 pixels
    np.testing.assert_allclose(fused[3:], alone[3:], atol=1e-6)  # 35 patches on one point: the same estimate

    cfg.model.refine.head.decoder = dict(type='UDPHeatmap', input_size=(64, 64), heatmap_size=(16, 16), sigma=2,
                                         heatmap_type='combined', blur_kernel_size=2)
    cfg.model.refine.head.out_channels = 3 * 38
    cfg.model.refine.head.loss = dict(type='CombinedTargetMSELoss', use_target_weight=True)
    with pytest.raises(ValueError, match='neighbours needs plain heatmaps'):
        MODELS.build(cfg.model)


def test_heatmap_plus_offset_targets_read_each_patch_s_own_landmark(monkeypatch) -> None:
    """UDP 'combined' local targets (class map + x / y offsets, 3 maps per landmark): the cascade reads maps
    3k..3k+2 of patch k, and a landmark off the heatmap grid comes back where it is (the offsets, not the grid)."""
    import torch
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config, set_num_landmarks

    init_default_scope('mmpose')
    cfg = load_config(TINY_CASCADE)
    cfg.model.refine.head.decoder = dict(type='UDPHeatmap', input_size=(64, 64), heatmap_size=(16, 16), sigma=2,
                                         heatmap_type='combined', blur_kernel_size=2)
    cfg.model.refine.head.loss = dict(type='CombinedTargetMSELoss', use_target_weight=True)
    set_num_landmarks(cfg, 5)
    assert cfg.model.refine.head.out_channels == 15
    model = MODELS.build(cfg.model).eval()
    assert model.maps_per_landmark == 3
    codec = model.refine_head.decoder
    factor = 2
    source = np.zeros((300, 200), dtype=np.uint8)
    # landmark k sits 1.3 k reduced-source pixels right of and 0.7 k above its patch centre (1 patch pixel each)
    centres = np.array([[60.0 + 20 * k, 80.0 + 25 * k] for k in range(5)])
    truth = centres + np.arange(5)[:, None] * [1.3, -0.7]

    def offset_network(patches: np.ndarray, stage=None) -> torch.Tensor:
        """A stand-in local network: patch i's maps of landmark i encode its true position, the other
        landmarks' maps a point in the patch's corner (read them and the estimate is centimetres off)."""
        maps = np.zeros((len(patches), 15, 16, 16), dtype=np.float32)
        for i in range(len(patches)):
            in_patch = np.full((1, 5, 2), 5.0)
            in_patch[0, i] = np.array([31.5, 31.5]) + (truth[i] - centres[i]) * 63 / 64  # UDP: 64 px span 0..63
            maps[i] = codec.encode(in_patch, np.ones((1, 5)))['heatmaps']
        return torch.from_numpy(maps)

    monkeypatch.setattr(model, '_refine_forward', offset_network)
    refined, scores = model.refine(from_reduced(centres, factor), source, factor)
    np.testing.assert_allclose(refined, from_reduced(truth, factor), atol=0.05)
    assert (scores > 0).all()

    cfg.model.refine.head.out_channels = 14
    with pytest.raises(ValueError, match='3 per landmark'):
        MODELS.build(cfg.model)


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
    assert 'loss_refine' in next(work_dir.glob('*/*.log')).read_text()  # the local stage trained
    saved = work_dir / config.name
    checkpoint = next(work_dir.glob('best_MRE_epoch_*.pth'))
    result = evaluate(saved, checkpoint, split='test', cfg_options={'data_root': str(coco)}, out_dir=folder / 't')
    assert np.isfinite(result.metrics['MRE'])
    return saved.read_text()


def test_step3_trains_a_cascade_with_heatmap_plus_offset_targets(tmp_path) -> None:
    """Step 3 trains and step 4 scores a cascade whose local head has UDP 'combined' targets."""
    saved = _train_and_score_tiny_cascade(tmp_path, 'model.refine.head.decoder.heatmap_type=combined',
                                          'model.refine.head.loss.type=CombinedTargetMSELoss', 'num_landmarks=38')
    assert "heatmap_type='combined'" in saved and 'out_channels=114' in saved


def test_context_channels_show_wider_fields_around_the_same_centre() -> None:
    """``refine.context=(1, 2, 4)``: channel c is the patch's field times context[c], same centre, same size."""
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    cfg = load_config(TINY_CASCADE)
    cfg.model.refine.context = (1, 2, 4)
    model = MODELS.build(cfg.model).eval()
    source = np.zeros((400, 400), dtype=np.uint8)
    source[200:204, 216:220] = 255  # a 4 x 4 block: still one full pixel after the 4x area reduction
    block_centre = np.array([217.5, 201.5])
    extent = model._extent(2)  # 64 source pixels = the patch side: 1 source pixel per patch pixel
    centre = block_centre - [12.0, 0.0]
    patches, matrices = model._cut_inputs(model._source_levels(source), centre[None], extent)
    assert patches.shape == (1, 3, 64, 64) and patches.dtype == np.uint8
    # (UDP: 64 source pixels span patch pixels 0..63)
    np.testing.assert_allclose(cv2.transform(block_centre[None, None], matrices[0])[0, 0], [31.5 + 12 * 63 / 64, 31.5],
                               atol=1e-3)  # the warp returned is the patch's own (channel 0), for the targets
    ys, xs = np.mgrid[0:64, 0:64]
    for channel, scale in enumerate((1, 2, 4)):
        weights = patches[0, channel].astype(np.float64)
        centroid = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
        # the block sits 12 / scale patch pixels right of the centre in channel c
        np.testing.assert_allclose(centroid, [31.5 + 12 / scale * 63 / 64, 31.5], atol=0.3, err_msg=str(channel))
    assert (patches[0, 2] > 0).sum() < (patches[0, 1] > 0).sum() < (patches[0, 0] > 0).sum()

    for wrong in ((2, 4, 1), (1, 2), (1, 2, 0)):
        with pytest.raises(ValueError, match='context'):
            cfg.model.refine.context = wrong
            MODELS.build(cfg.model)
    with pytest.raises(ValueError, match='deform'):
        cfg.model.refine.context = (1, 2, 4)
        cfg.model.refine.train = dict(deform=dict(axis_scale=0.1))
        MODELS.build(cfg.model)


def test_step3_trains_a_cascade_with_context_channels(tmp_path) -> None:
    """Through step 3 and step 4: context channels in the training patches, the loss and the test."""
    saved = _train_and_score_tiny_cascade(tmp_path, 'model.refine.context=(1,2,4)')
    assert "context=(" in saved  # the config step 3 saved carries the context


# ------------------------------------------------------------------------------ the local stage's schedule
def _runner_for(cfg_optim: dict, max_epochs: int = 3, iters_per_epoch: int = 4):
    from types import SimpleNamespace

    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    model = MODELS.build(load_config(TINY_CASCADE).model)
    return SimpleNamespace(model=model, optim_wrapper=build_optim_wrapper(model, cfg_optim), epoch=0,
                           max_epochs=max_epochs, train_dataloader=[None] * iters_per_epoch)


def test_local_stage_schedule_anneals_then_freezes_the_local_stage_only() -> None:
    from cldetection.cascade import LocalStageScheduleHook

    runner = _runner_for(dict(optimizer=dict(type='Adam', lr=1e-3),
                              paramwise_cfg=dict(custom_keys={'refine_': dict(lr_mult=1.0)})))
    hook = LocalStageScheduleHook(epochs=1.5)  # of 3
    hook.before_train(runner)
    local = {id(p) for p in list(runner.model.refine_backbone.parameters()) +
             list(runner.model.refine_head.parameters())}
    groups = runner.optim_wrapper.optimizer.param_groups
    local_lrs = lambda: {g['lr'] for g in groups if id(g['params'][0]) in local}  # noqa: E731
    hook.before_train_iter(runner, 0)
    assert local_lrs() == {1e-3}
    hook.before_train_iter(runner, 2)  # 0.5 epochs done of 1.5: cosine factor (1 + cos(pi / 3)) / 2 = 0.75
    (lr, ) = local_lrs()
    assert lr == pytest.approx(0.75e-3)
    assert {g['lr'] for g in groups if id(g['params'][0]) not in local} == {1e-3}  # the global stage as scheduled
    assert not runner.model.refine_frozen
    runner.epoch = 1
    hook.before_train_iter(runner, 2)  # 1.5 epochs done: frozen
    assert runner.model.refine_frozen
    assert not any(p.requires_grad for p in runner.model.refine_backbone.parameters())
    assert all(p.requires_grad for p in runner.model.backbone.parameters())

    # a run shorter than `epochs` (the cpu budget) trains the local stage to its end, annealed over the run
    runner = _runner_for(dict(optimizer=dict(type='Adam', lr=1e-3),
                              paramwise_cfg=dict(custom_keys={'refine_': dict(lr_mult=1.0)})))
    hook = LocalStageScheduleHook(epochs=40)
    hook.before_train(runner)
    local = {id(p) for p in list(runner.model.refine_backbone.parameters()) +
             list(runner.model.refine_head.parameters())}
    runner.epoch = 2
    hook.before_train_iter(runner, 3)  # 2.75 of 3 epochs done
    assert not runner.model.refine_frozen
    (lr, ) = {g['lr'] for g in runner.optim_wrapper.optimizer.param_groups if id(g['params'][0]) in local}
    assert lr == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 2.75 / 3)))


def test_local_stage_schedule_needs_the_local_stage_in_groups_of_its_own() -> None:
    from cldetection.cascade import LocalStageScheduleHook

    runner = _runner_for(dict(optimizer=dict(type='Adam', lr=1e-3)))  # one group for everything
    with pytest.raises(ValueError, match="custom_keys={'refine_'"):
        LocalStageScheduleHook(epochs=1).before_train(runner)
    with pytest.raises(ValueError, match='epochs'):
        LocalStageScheduleHook(epochs=0)


def test_step3_with_the_local_stage_schedule_stops_training_the_local_stage(tmp_path) -> None:
    """Through step 3: the local stage's weights stop changing once frozen, the global stage's do not."""
    import torch

    from test_train import STEP3, _env, make_tiny_coco

    coco = make_tiny_coco(tmp_path)
    config = tmp_path / 'scheduled.py'
    config.write_text(f"_base_ = '{TINY_CASCADE}'\n"
                      "optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'refine_': dict(lr_mult=1.0)}))\n"
                      "custom_hooks = _base_.custom_hooks + [dict(type='LocalStageScheduleHook', epochs=1)]\n")
    work_dir = tmp_path / 'work'
    proc = subprocess.run([sys.executable, str(STEP3), str(config), '--work-dir', str(work_dir), '--seed', '0',
                           '--cfg-options', f'data_root={coco}', 'train_dataloader.batch_size=2',
                           'train_cfg.max_epochs=2', 'train_cfg.val_interval=1',
                           'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=3'],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'local stage frozen at epoch 1.00 of 2' in next(work_dir.glob('*/*.log')).read_text()
    first, second = (torch.load(work_dir / f'epoch_{e}.pth', map_location='cpu', weights_only=False)['state_dict']
                     for e in (1, 2))
    local = [k for k in first if k.startswith('refine_') and first[k].is_floating_point()]
    assert local and all(torch.equal(first[k], second[k]) for k in local)
    assert not all(torch.equal(first[k], second[k]) for k in first if k.startswith('backbone.'))


# ------------------------------------------------------------------------------ ensemble diagnostic
def test_mean_of_predictions_averages_each_image_and_refuses_mismatched_images() -> None:
    from mmengine.structures import InstanceData
    from mmpose.structures import PoseDataSample

    from benchmarks.ensemble_eval import mean_of_predictions

    def sample(path: str, keypoints) -> PoseDataSample:
        result = PoseDataSample(metainfo={'img_path': path})
        result.pred_instances = InstanceData(keypoints=np.asarray(keypoints, dtype=np.float32))
        return result

    first = [sample('a.png', [[[0.0, 0.0], [10.0, 4.0]]]), sample('b.png', [[[2.0, 2.0], [2.0, 2.0]]])]
    second = [sample('a.png', [[[4.0, 2.0], [20.0, 4.0]]]), sample('b.png', [[[4.0, 6.0], [0.0, 0.0]]])]
    merged = mean_of_predictions([first, second])
    np.testing.assert_allclose(merged[0].pred_instances.keypoints, [[[2.0, 1.0], [15.0, 4.0]]])
    np.testing.assert_allclose(merged[1].pred_instances.keypoints, [[[3.0, 4.0], [1.0, 1.0]]])
    np.testing.assert_allclose(first[0].pred_instances.keypoints, [[[0.0, 0.0], [10.0, 4.0]]])  # inputs untouched
    with pytest.raises(RuntimeError, match='different images'):
        mean_of_predictions([first, second[::-1]])


def test_ensemble_of_a_model_with_itself_scores_as_the_model(trained_cascade, tmp_path) -> None:
    from benchmarks.ensemble_eval import run_ensemble
    from cldetection.evaluate import evaluate

    coco, checkpoint = trained_cascade
    first, second, mean = run_ensemble([(TINY_CASCADE, checkpoint)] * 2, str(coco), 'test', tmp_path)
    alone = evaluate(TINY_CASCADE, checkpoint, split='test', cfg_options={'data_root': str(coco)},
                     out_dir=tmp_path / 'alone').metrics
    assert first['MRE'] == pytest.approx(alone['MRE']) and second['MRE'] == pytest.approx(alone['MRE'])
    assert mean['MRE'] == pytest.approx(alone['MRE'])


def test_landmark_bias_model_errors_agree_with_step4(trained_cascade, tmp_path) -> None:
    from benchmarks.landmark_bias import model_errors, offset_table
    from cldetection.evaluate import evaluate

    coco, checkpoint = trained_cascade
    errors = model_errors(TINY_CASCADE, checkpoint, str(coco), 'test', tmp_path / 'bias')
    alone = evaluate(TINY_CASCADE, checkpoint, split='test', cfg_options={'data_root': str(coco)},
                     out_dir=tmp_path / 'alone').metrics
    assert errors.shape == (2, 38, 2)
    assert offset_table(errors)[:, 2].mean() == pytest.approx(alone['MRE'], rel=1e-5)


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


# ------------------------------------------------------------------------------ a middle patch stage
TINY_MIDDLE_CODEC = dict(type='UDPHeatmap', input_size=(64, 64), heatmap_size=(16, 16), sigma=2)


def _tiny_middle_stage() -> dict:
    """A middle stage for the tiny cascade: 64 x 64 patches at 4 radiograph pixels per patch pixel (the local
    stage: 64 x 64 at 2), cut from the factor-2 source reduced twice more: 128 source pixels against 64."""
    from cldetection.config_utils import load_config

    backbone = load_config(TINY_CASCADE).model.refine.backbone.to_dict()  # the tiny local stage's narrow HRNet
    return dict(backbone=backbone,
                head=dict(type='HeatmapHead', in_channels=backbone['extra']['stage2']['num_channels'][0], out_channels=38, deconv_out_channels=None,
                          loss=dict(type='KeypointMSELoss', use_target_weight=True), decoder=TINY_MIDDLE_CODEC),
                patch_size=(64, 64), pixel_scale=4.0, train=dict(patches_per_image=4, jitter_mm=4.0))


def _tiny_cascade_with_middle_stage():
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    cfg = load_config(TINY_CASCADE)
    cfg.model.middle = _tiny_middle_stage()
    return MODELS.build(cfg.model).eval()


def test_middle_stage_finds_what_the_local_stage_cannot_see_then_the_local_stage_refines(monkeypatch) -> None:
    """Stand-in networks that peak on their patch's brightest pixel: a dot 40 source pixels from the start is
    outside the local stage's patch (32 pixels each way) but inside the middle stage's (64); the middle stage
    brings the estimate within its coarser pixels, the local stage onto the dot. Without the middle stage the
    point is kept: the local stage alone does not see the dot."""
    import torch

    model = _tiny_cascade_with_middle_stage()
    middle, local = model.patch_stages
    assert (middle.name, local.name) == ('middle', 'refine') and local is model.local_stage
    assert middle.reduction(2) == 2 and local.reduction(2) == 1
    assert (middle.extent(2), local.extent(2)) == (128.0, 64.0)  # factor-2 source pixels per patch side
    source = np.zeros((300, 300), dtype=np.uint8)
    source[150:154, 100:104] = 255  # a 4 x 4 block (one full pixel after the middle stage's 2x reduction)
    dot = np.array([101.5, 151.5])  # its centre, factor-2 source pixels
    seen = {'middle': [], 'refine': []}

    def brightest_pixel_network(patches: np.ndarray, stage=None) -> torch.Tensor:
        stage = stage or model.local_stage
        codec = stage.head.decoder
        heatmaps = np.zeros((len(patches), 38) + tuple(codec.heatmap_size[::-1]), dtype=np.float32)
        for i, patch in enumerate(patches):
            if patch.max() > 0:
                ys, xs = np.nonzero(patch[0] == patch[0].max())
                heatmaps[i] = codec.encode(np.full((1, 38, 2), (xs.mean(), ys.mean()), dtype=np.float32),
                                           np.ones((1, 38)))['heatmaps']
                seen[stage.name].append(i)
        return torch.from_numpy(heatmaps)

    monkeypatch.setattr(model, '_refine_forward', brightest_pixel_network)
    start = from_reduced(np.array([dot + [40.0, 0.0]] + [[250.0, 250.0]] * 37), 2)  # radiograph pixels
    after_middle, _ = model.refine_stage(middle, start, source, 2)
    assert np.linalg.norm(after_middle[0] - from_reduced(dot, 2)) < 4.0 * 2  # within 2 middle-stage pixels
    refined, _ = model.refine(start, source, 2)
    np.testing.assert_allclose(refined[0], from_reduced(dot, 2), atol=1.5)
    np.testing.assert_array_equal(refined[1:], start[1:])  # nothing to see: kept by both stages
    assert seen['middle'] == [0, 0] and 0 in seen['refine']
    alone, _ = model.refine_stage(local, start, source, 2)
    np.testing.assert_array_equal(alone[0], start[0])


def test_middle_stage_training_targets_peak_on_the_landmark_in_its_reduced_patch() -> None:
    from test_transforms import dotted_cascade_sample, peak_near

    model = _tiny_cascade_with_middle_stage()
    middle = model.patch_stages[0]
    middle.intensity.prob = 0.0
    # dots far enough apart that each 5-pixel window of the patch holds one
    sample = dotted_cascade_sample(5, 200, 1000, 60, (600, 600), blur=3.0)
    codec = middle.head.decoder
    np.random.seed(0)
    checked = 0
    for _ in range(10):
        patches, heatmaps, weights = model._training_patches(sample, middle)
        assert patches.shape == (4, 1, 64, 64) and heatmaps.shape == (4, 38, 16, 16)
        for patch, maps, weight in zip(patches[:, 0].astype(np.float64), heatmaps, weights):
            decoded, _ = codec.decode(maps)
            for k in np.flatnonzero(weight > 0):
                x, y = decoded[0, k]
                if not (12 <= x < 52 and 12 <= y < 52):  # (near the border the UDP fit leans inwards)
                    continue
                # the dot (UDP at 4 patch pixels per heatmap pixel: ~0.7 bias)
                assert np.linalg.norm(peak_near(patch, decoded[0, k], radius=4) - decoded[0, k]) < 2.0
                checked += 1
    assert checked > 20


def test_step3_trains_a_cascade_with_a_middle_stage(tmp_path, capsys) -> None:
    """Step 3 trains the three stages together (both patch losses logged), step 4 scores through the saved
    config, num_landmarks reaches the middle stage's head, and the per-stage diagnostic scores each stage."""
    config = tmp_path / 'tiny_cascade_middle.py'
    config.write_text(f'_base_ = {str(TINY_CASCADE)!r}\nmodel = dict(middle={_tiny_middle_stage()!r})\n')
    saved = _train_and_score_tiny_cascade(tmp_path, 'num_landmarks=38', config=config)
    assert 'middle=dict(' in saved
    assert 'loss_middle' in next((tmp_path / 'work').glob('*/*.log')).read_text()
    from cldetection.config_utils import load_config, set_num_landmarks

    cfg = load_config(config)
    set_num_landmarks(cfg, 19)
    assert cfg.model.middle.head.out_channels == 19 and cfg.model.refine.head.out_channels == 19

    # the per-stage diagnostic: its cascade column is step 4's MRE, and it agrees with the per-landmark one
    from benchmarks.cascade_oracle import STAGE_COLUMNS, per_point_errors, per_stage_errors, print_per_stage
    from cldetection.evaluate import evaluate

    saved_config = tmp_path / 'work' / config.name
    checkpoint = next((tmp_path / 'work').glob('best_MRE_epoch_*.pth'))
    coco = tmp_path / 'coco'
    mre = evaluate(saved_config, checkpoint, split='test', cfg_options={'data_root': str(coco)},
                   out_dir=tmp_path / 't2').metrics['MRE']
    stages = per_stage_errors(saved_config, checkpoint, str(coco), 'test', tmp_path / 'd')
    assert stages.shape[1] == 1 + len(STAGE_COLUMNS) and len(stages) > 0
    assert stages[:, 3].mean() == pytest.approx(mre, rel=1e-5)
    points = per_point_errors(saved_config, checkpoint, str(coco), 'test', 1, tmp_path / 'd')
    np.testing.assert_allclose(points[:, 1:], stages[:, [1, 3, 6]], rtol=1e-6)
    capsys.readouterr()  # (drop what the runners printed)
    print_per_stage(stages)
    assert capsys.readouterr().out.splitlines()[1].startswith('all ')


def test_step3_trains_patch_stages_that_start_from_the_stage_before(tmp_path) -> None:
    """Step 3 trains a cascade whose middle stage starts from the global stage's training estimates and whose
    local stage starts from the middle stage's (``train.start='previous_stage'`` on both), and step 4 scores it:
    the real pipeline supplies ``input_warp`` and the stages' estimates on real batches."""
    middle = _tiny_middle_stage()
    middle['train'] = dict(middle['train'], start='previous_stage')
    config = tmp_path / 'tiny_cascade_start.py'
    config.write_text(f'_base_ = {str(TINY_CASCADE)!r}\nmodel = dict(middle={middle!r}, '
                      "refine=dict(train=dict(start='previous_stage', jitter_mm=1.0)))\n")
    saved = _train_and_score_tiny_cascade(tmp_path, 'num_landmarks=38', config=config)
    assert saved.count("start='previous_stage'") == 2
    log = next((tmp_path / 'work').glob('*/*.log')).read_text()
    assert 'loss_middle' in log and all(f'{stage}_start_{key}' in log for stage in ('middle', 'refine')
                                        for key in ('used', 'error_mm'))


def test_step1_and_the_cost_benchmark_report_every_patch_stage(tmp_path) -> None:
    """Step 1's forward check and ``benchmarks.cascade_cost`` cover the middle stage as well as the local one."""
    from benchmarks.cascade_cost import measure
    from cldetection.env_check import forward_default_model

    config = tmp_path / 'tiny_cascade_middle.py'
    config.write_text(f'_base_ = {str(TINY_CASCADE)!r}\nmodel = dict(middle={_tiny_middle_stage()!r})\n')
    checked = forward_default_model(config, device='cpu')
    assert checked['middle_input'] == [38, 3, 64, 64] and checked['middle_output'] == [38, 38, 16, 16]
    assert checked['local_input'] == [38, 3, 64, 64] and checked['local_output'] == [38, 38, 16, 16]
    cost = measure(config, num_landmarks=38, repeats=1)
    assert cost['stages'] == ['middle', 'local'] and cost['batch_norms_folded']
    for key in ('global', 'middle', 'local'):
        assert cost[f'train_{key}_s_per_image'] > 0 and cost[f'infer_{key}_ms_per_image'] > 0
    assert cost['parameters_middle_M'] > 0 and cost['parameters_local_M'] > 0
    assert 1e6 * (cost['parameters_global_M'] + cost['parameters_middle_M'] + cost['parameters_local_M']) == \
        pytest.approx(checked['parameters'])


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
    dtypes = {}
    for mode in ('train', 'eval'):
        getattr(model, mode)()
        dtypes[mode] = {model._backbone_forward(m, inputs)[0].dtype for m in (model.backbone, model.refine_backbone)}
    assert dtypes == {'train': {torch.float32}, 'eval': {torch.float32}}  # what the heads get: always float32
    seen = []  # what the backbone itself computes in
    model.refine_backbone.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    for mode in ('train', 'eval'):
        getattr(model, mode)()
        model._backbone_forward(model.refine_backbone, inputs)
    assert seen == [torch.float32, torch.bfloat16]
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
    conv = fast.model.refine_backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert plain.model.refine_backbone.conv1.weight.is_contiguous()
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 160, 128) * 50  # the global input (h x w), normalised
    patches = np.random.default_rng(0).integers(0, 256, (38, 1, 64, 64), dtype=np.uint8)
    with torch.no_grad():
        for model in (fast.model, plain.model):
            model.heatmaps = (model.head.forward(model.extract_feat(inputs)), model._refine_forward(patches))
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
    conv = folded.model.refine_backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 160, 128) * 50
    patches = np.random.default_rng(0).integers(0, 256, (38, 1, 64, 64), dtype=np.uint8)
    with torch.no_grad():
        for model in (folded.model, plain.model):
            model.heatmaps = (model.head.forward(model.extract_feat(inputs)), model._refine_forward(patches))
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

    for name in ('backbone', 'refine_backbone'):
        getattr(predictor.model, name).register_forward_hook(record(name))
    for name in ('head', 'refine_head'):  # called as head.forward / head.predict: no module hooks
        head = getattr(predictor.model, name)
        head.forward = (lambda forward, hook: lambda feats: (hook(None, None, feats), forward(feats))[1])(
            head.forward, record(name))
    points = predictor.predict_images([image])
    assert seen == {'backbone': {'torch.bfloat16'}, 'refine_backbone': {'torch.bfloat16'},
                    'head': {'torch.float32'}, 'refine_head': {'torch.float32'}}
    assert points.dtype == np.float64 and np.isfinite(points).all()
    assert predictor.model.backbone.conv1.weight.dtype == torch.float32  # autocast: the weights stay float32


def test_step3_trains_a_cascade_in_bf16(tmp_path) -> None:
    """Step 3 trains with both backbones in bfloat16 autocast (model.precision=bf16) and step 4 scores it."""
    saved = _train_and_score_tiny_cascade(tmp_path, 'model.precision=bf16')
    assert "precision='bf16'" in saved


def _middle_stage_that_misses_by(model, shift: float, record: list):
    """A stand-in for the middle stage's network: it reports every landmark ``shift`` patch pixels right of its
    patch's centre (``0``: a flat map, the landmark lost); it records whether it ran in eval mode."""
    import torch

    middle = model.patch_stages[0]

    def network(patches: np.ndarray, stage=None) -> torch.Tensor:
        assert stage is middle, 'only the middle stage runs while the training patches are cut'
        record.append(stage.backbone.training or stage.head.training)
        codec = stage.head.decoder
        heatmaps = np.zeros((len(patches), 38) + tuple(codec.heatmap_size[::-1]), dtype=np.float32)
        if shift:
            centre = (np.array(codec.input_size, dtype=np.float32) - 1) / 2 + [shift, 0.0]  # (input pixels)
            heatmaps[:] = codec.encode(np.tile(centre, (1, 38, 1)), np.ones((1, 38)))['heatmaps']
        return torch.from_numpy(heatmaps)

    return network


@pytest.mark.parametrize('shift, expected', [(3.0, -6.0), (0.0, 0.0), (12.0, 0.0)])
def test_local_stage_trained_from_the_middle_stage_s_estimates(monkeypatch, shift, expected) -> None:
    """``train.start='previous_stage'``: the local stage's training patch is centred where the middle stage
    (in eval mode) puts the landmark. The stand-in middle stage misses by ``shift`` of its patch pixels (4
    radiograph pixels each): 3 -> 12 radiograph pixels -> 6 local patch pixels (2 radiograph pixels each, 64
    source pixels per 64-pixel patch), so the landmark's target sits 6 pixels left of the patch centre. A lost
    landmark (flat map: 0) and a miss beyond the local stage's max_offset (12 -> 24 > 0.35 x 64 patch pixels)
    centre the patch on the truth, as without the option."""
    from test_transforms import dotted_cascade_sample

    model = _tiny_cascade_with_middle_stage().train()
    middle, local = model.patch_stages
    middle.train['jitter_mm'] = 0.0  # the middle stage starts on the truth
    local.train.update(start='previous_stage', jitter_mm=0.0, rotate_deg=0.0, scale_range=(1.0, 1.0))
    local.intensity.prob = 0.0
    modes: list = []
    monkeypatch.setattr(model, '_refine_forward', _middle_stage_that_misses_by(model, shift, modes))
    # landmarks >= 150 radiograph pixels apart: each local patch (+-64 px, offset <= 45) holds only its own
    sample = dotted_cascade_sample(3, 200, 2000, 150, (1100, 1100), blur=3.0)
    np.random.seed(0)
    patches, heatmaps, weights = model._training_patches(sample, local)
    assert modes == [False] and middle.backbone.training and middle.head.training  # eval, then restored
    assert len(patches) == local.train['patches_per_image'] and (weights > 0).sum(axis=1).tolist() == [1] * 4
    centre = np.array(local.patch_size) / 2  # where the codec decodes the patch centre (see patch_to_image)
    for maps, weight in zip(heatmaps, weights):
        decoded, _ = local.head.decoder.decode(maps)
        # (MMPose's UDP decodes input pixel x to x * w / (w - 1): both the middle stage's miss and the target)
        np.testing.assert_allclose(decoded[0, np.flatnonzero(weight > 0)[0]] - centre, [expected * 64 / 63, 0.0],
                                   atol=0.1)


def _tiny_cascade(start: str = 'truth', **train):
    """The tiny cascade with ``refine.train=dict(start=start, **train)``."""
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    cfg = load_config(TINY_CASCADE)
    cfg.model.refine.train = dict(start=start, **train)
    return MODELS.build(cfg.model)


def test_local_stage_trained_from_the_global_stage_s_estimates() -> None:
    """Without a middle stage, ``train.start='previous_stage'`` centres the local stage's training patches on the
    global stage's estimates (image pixels): 12 pixels right of the truth -> 6 local patch pixels; one lost
    (NaN) or beyond max_offset (60 -> 30 > 0.35 x 64) -> the truth."""
    from test_transforms import dotted_cascade_sample

    model = _tiny_cascade('previous_stage').train()
    local = model.local_stage
    local.train.update(jitter_mm=0.0, rotate_deg=0.0, scale_range=(1.0, 1.0), patches_per_image=38)
    local.intensity.prob = 0.0
    sample = dotted_cascade_sample(3, 200, 2000, 150, (1100, 1100), blur=3.0)
    truth = np.asarray(sample.gt_instances.keypoints)[0]
    miss = np.tile([12.0, 0.0], (38, 1))
    miss[:10] = np.nan
    miss[10:20] = [60.0, 0.0]
    np.random.seed(0)
    landmarks = np.random.choice(38, 38, replace=False)  # the patches' own landmarks: its first random draw
    np.random.seed(0)
    _, heatmaps, weights = model._training_patches(sample, local, coarse=truth + miss)
    assert (weights[np.arange(38), landmarks] > 0).all() and model._starts_used == {'refine': [18, pytest.approx(18 * 1.2)]}  # 12 px at 0.1 mm
    centre = np.array(local.patch_size) / 2
    offsets = np.array([local.head.decoder.decode(maps)[0][0, k] - centre for maps, k in zip(heatmaps, landmarks)])
    expected = np.where((landmarks >= 20)[:, None], [-6.0 * 64 / 63, 0.0], 0.0)  # (UDP: x -> x * w / (w - 1))
    np.testing.assert_allclose(offsets, expected, atol=0.1)
    with pytest.raises(ValueError, match="needs the global stage's training estimates"):
        model._training_patches(sample, local)


def test_global_training_estimates_are_mapped_back_through_the_input_warp(monkeypatch) -> None:
    """The global stage's decoded training heatmaps (input pixels of a rotated, reduced crop) come back in image
    pixels; a sample without ``input_warp`` is refused in one line."""
    import cv2
    import torch
    from mmpose.structures import PoseDataSample

    model = _tiny_cascade('previous_stage').train()
    codec = model.head.decoder
    truth = np.random.default_rng(0).uniform(300, 1500, (38, 2))
    warp = cv2.getRotationMatrix2D((900.0, 900.0), 8.0, 1.0 / 14)  # image -> input: rotation and 14x reduction
    warp[:, 2] = [64.0, 80.0] - warp[:, :2] @ [900.0, 900.0]  # (the points' middle to the 128 x 160 input's)
    in_input = truth @ warp[:, :2].T + warp[:, 2]
    maps = torch.from_numpy(codec.encode(in_input[None].astype(np.float32), np.ones((1, 38)))['heatmaps'])
    monkeypatch.setattr(model.head, 'forward', lambda feats: maps[None].repeat(2, 1, 1, 1))
    samples = [PoseDataSample(metainfo=dict(input_warp=warp)) for _ in range(2)]
    for estimates in model._global_training_estimates((None, ), samples):
        np.testing.assert_allclose(estimates, truth, atol=14 * 0.1)  # (0.1 input pixel of UDP decoding, 14x)
    with pytest.raises(KeyError, match='"input_warp": use AntiAliasTopdownAffine and PackCephalometricInputs'):
        model._global_training_estimates((None, ), [PoseDataSample(metainfo=dict())])


def test_previous_stage_start_must_be_known() -> None:
    with pytest.raises(ValueError, match=r"refine.train.start must be one of \('truth', 'previous_stage'\)"):
        _tiny_cascade('middle')


def test_a_share_of_the_local_patches_starts_from_the_global_estimates() -> None:
    """``train.start_share=0.5``: each training patch is centred on the global estimate with probability 0.5 (the
    draw after the offsets'), the others on the truth; the logged share counts only the former."""
    from test_transforms import dotted_cascade_sample

    model = _tiny_cascade('previous_stage').train()
    local = model.local_stage
    local.train.update(jitter_mm=0.0, rotate_deg=0.0, scale_range=(1.0, 1.0), patches_per_image=38, start_share=0.5)
    local.intensity.prob = 0.0
    sample = dotted_cascade_sample(3, 200, 2000, 150, (1100, 1100), blur=3.0)
    truth = np.asarray(sample.gt_instances.keypoints)[0]
    np.random.seed(0)
    landmarks = np.random.choice(38, 38, replace=False)
    np.random.normal(0.0, 0.0, (38, 2))  # the (zero) offsets' draw
    take = np.random.random_sample(38) < 0.5
    assert 5 < take.sum() < 33
    np.random.seed(0)
    _, heatmaps, _ = model._training_patches(sample, local, coarse=truth + [12.0, 0.0])
    assert model._starts_used == {'refine': [int(take.sum()), pytest.approx(take.sum() * 1.2)]}
    centre = np.array(local.patch_size) / 2
    offsets = np.array([local.head.decoder.decode(maps)[0][0, k] - centre for maps, k in zip(heatmaps, landmarks)])
    np.testing.assert_allclose(offsets, np.where(take[:, None], [-6.0 * 64 / 63, 0.0], 0.0), atol=0.1)


def test_patches_centred_on_the_truth_use_truth_jitter_mm() -> None:
    """Where the patch is centred on the truth (here: the global stage lost every landmark), its offset has the SD
    ``truth_jitter_mm``: the same draws as with ``jitter_mm`` alone, scaled by their ratio (then cut at
    max_offset)."""
    from test_transforms import dotted_cascade_sample

    def offsets(truth_jitter_mm):
        model = _tiny_cascade('previous_stage').train()
        local = model.local_stage
        local.train.update(jitter_mm=0.5, truth_jitter_mm=truth_jitter_mm, rotate_deg=0.0, scale_range=(1.0, 1.0),
                           patches_per_image=38)
        local.intensity.prob = 0.0
        sample = dotted_cascade_sample(3, 200, 2000, 150, (1100, 1100), blur=3.0)
        np.random.seed(1)
        landmarks = np.random.choice(38, 38, replace=False)
        np.random.seed(1)
        _, heatmaps, _ = model._training_patches(sample, local, coarse=np.full((38, 2), np.nan))
        assert model._starts_used == {'refine': [0, 0.0]}
        centre = np.array(local.patch_size) / 2
        return np.array([local.head.decoder.decode(maps)[0][0, k] - centre for maps, k in zip(heatmaps, landmarks)])

    own, wider = offsets(None), offsets(1.5)
    assert 1.5 < np.abs(own).mean() < 3.5  # 0.5 mm = 5 radiograph px = 2.5 patch px SD: mean |x| ~ 2
    limit = 0.35 * 64 * 64 / 63
    np.testing.assert_allclose(wider, np.clip(3 * own, -limit, limit), atol=0.3)


@pytest.mark.parametrize('train, message', [
    (dict(start_share=0.0), r'refine.train.start_share must be a number in \(0, 1\], got 0.0'),
    (dict(start_share=True), r'refine.train.start_share must be a number in \(0, 1\], got True'),
    (dict(truth_jitter_mm=-1), r'refine.train.truth_jitter_mm must be None or a number >= 0, got -1'),
    (dict(truth_jitter_mm=2.0, jitter_mm=0.0), r'refine.train.truth_jitter_mm needs jitter_mm > 0'),
    (dict(start='truth', start_share=0.5), r"refine.train.start_share and truth_jitter_mm need start='previous_stage'"),
    (dict(start='truth', truth_jitter_mm=2.0), r"start_share and truth_jitter_mm need start='previous_stage'"),
])
def test_start_share_and_truth_jitter_are_checked(train, message) -> None:
    with pytest.raises(ValueError, match=message):
        _tiny_cascade(**{'start': 'previous_stage', **train})


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
