"""int8 networks for step 5's ONNX Runtime engine: post-training quantisation calibrated on training images.

    python -m cldetection.quantize --config_file CONFIG --load_weight_path WEIGHTS \
        --images TRAIN_IMAGES

Why: on a CPU without bfloat16 hardware step 5's time is mostly the cascade's two float32 networks. ONNX Runtime
runs their convolutions in 8-bit integers instead (``u8 x s8`` kernels, which AVX2 has; weights in 7 bits, see
:func:`quantize_network`), faster, for landmarks that move a little: how much faster and how far they move on
cl2023 fold 1 and ISBI 2015 Test1 is measured by ``python -m benchmarks.int8_accuracy`` (``benchmarks/RESULTS.md``,
"Step 5 in int8"; issue 40 asks for an MRE within 0.02 mm of float32 on both).

How: ONNX Runtime's static quantisation (``quantize_static``, QDQ format) of the float32 files that
:mod:`cldetection.inference_engine` exports: weights int8 per output channel, activations uint8 over the range
(min to max) each tensor takes when the float networks predict the calibration images -- the global network on
the images, the local network on the patches the cascade cuts from them. Ranges are measured, not guessed, so
the calibration images should look like the images predicted later: training images (labels are not needed).

Files: ``<weights>.onnx/<key>.global.int8.onnx`` and ``<key>.local.int8.onnx``, beside the float files of the same
export key, so changed weights or a changed config leave them stale (removed at the next export) instead of
silently used. ``--engine onnxruntime-int8`` needs them (a one-line error says to run this command);
``--engine auto`` uses them when they are there, the float files otherwise. The model tarball of step 6 carries
them.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .errors import claim_output, fail, releasing_claims, run_cli
from .inference_engine import INPUT_NAME, InferenceEngine, export_key, network_files

logger = logging.getLogger(__name__)

#: Calibration images used by default: each costs one prediction, and the calibrator keeps every image's activations
#: until it has seen them all, so memory grows with the number.
DEFAULT_NUM_IMAGES = 16


class _RecordingNetwork:
    """A network that keeps a copy of every input it is called with (the calibration batches)."""

    def __init__(self, network) -> None:
        self.network, self.inputs = network, []

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        self.inputs.append(np.ascontiguousarray(inputs.detach().to('cpu', torch.float32).numpy()).copy())
        return self.network(inputs)


def record_network_inputs(predictor, images: Sequence[Path], progress: bool = True) -> dict[str, list[np.ndarray]]:
    """The inputs of both networks while ``predictor`` (a :class:`~cldetection.predict.LandmarkPredictor` on the
    float ONNX Runtime engine) predicts ``images``: ``{'global': [1 x 3 x H x W, ...], 'local': [P x 3 x h x w,
    ...]}``, one batch per image."""
    from .image_io import read_radiograph

    engine = predictor.model.engine
    recorders = {'global': _RecordingNetwork(engine.global_network), 'local': _RecordingNetwork(engine.local_network)}
    predictor.model.set_engine(InferenceEngine('recording', recorders['global'], recorders['local'], engine.files))
    try:
        for path in tqdm(images, desc='calibration images', unit='image', disable=not progress):
            predictor.predict_with_signals([read_radiograph(path).image])
    finally:
        predictor.model.set_engine(engine)
    return {name: recorder.inputs for name, recorder in recorders.items()}


def quantize_network(float_file: Path, out_file: Path, batches: Sequence[np.ndarray],
                     reduce_range: bool = True) -> None:
    """Quantise one exported network to ``out_file`` (written atomically), its activation ranges from ``batches``
    (``reduce_range=False``, 8-bit weights, only for ``benchmarks.int8_accuracy``'s comparison)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .challenge_io import atomic_output

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.iterator = iter(batches)

        def get_next(self) -> Optional[dict]:
            batch = next(self.iterator, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix='cldetection-quantize.') as tmp, atomic_output(out_file) as part:
        prepared = Path(tmp) / 'prepared.onnx'
        # shape inference and graph optimisation first, as ONNX Runtime's quantisation guide asks (symbolic shape
        # inference is for transformer graphs and would need sympy's slow path; these are convolutions)
        quant_pre_process(str(float_file), str(prepared), skip_symbolic_shape=True)
        # per-channel int8 weights and uint8 activations: ONNX Runtime's recommended CNN setting on x86 (u8s8), with
        # weights in 7 bits (reduce_range): without AVX-VNNI the u8s8 kernels add pairs of products in 16 bits
        # (vpmaddubsw), which saturates for 8-bit weights -- on ISBI Test1 that cost 0.07 mm of MRE, 7-bit weights
        # 0.004 mm (RESULTS.md, "Step 5 in int8"). Its calibrator keeps every batch's activations until the end
        # (its CalibMaxIntermediateOutputs, 1.31, drops them uncounted), so memory grows with the images
        quantize_static(str(prepared), str(part), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)


def calibration_subset(paths: Sequence[Path], count: int) -> list[Path]:
    """``count`` of ``paths`` spread evenly over them (all of them when there are fewer)."""
    if len(paths) <= count:
        return list(paths)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]


@releasing_claims()
def quantize_checkpoint(config_file: str | Path, checkpoint_file: str | Path, inputs: Sequence[str | Path], *,
                        num_images: int = DEFAULT_NUM_IMAGES, overwrite: bool = False,
                        progress: bool = True) -> dict[str, Path]:
    """Export ``checkpoint_file``'s cascade (or reuse its export), quantise both networks on ``num_images`` of the
    images under ``inputs`` (files or folders), and return the int8 files by network name."""
    from .image_io import find_images
    from .predict import LandmarkPredictor

    if num_images < 1:
        fail(None, f'--num-images must be >= 1, got {num_images}')
    images = calibration_subset(find_images(inputs), num_images)
    predictor = LandmarkPredictor(config_file, checkpoint_file, device='cpu', engine='onnxruntime')
    float_files = predictor.model.engine.files
    int8_files = network_files(float_files['global'].parent, export_key(predictor.model), int8=True)
    outputs = {name: claim_output(path, overwrite).path for name, path in int8_files.items()}
    batches = record_network_inputs(predictor, images, progress)
    for name, out in outputs.items():
        logger.info('quantising the %s network on %d batches to %s', name, len(batches[name]), out)
        quantize_network(float_files[name], out, batches[name])
    return outputs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Quantise a trained cascade\'s two networks to int8 for step 5\'s ONNX Runtime engine, with '
                    'activation ranges measured on training images; writes <weights>.onnx/<key>.{global,local}.'
                    'int8.onnx beside the weights, which step 5 and process.py then use (--engine auto or '
                    'onnxruntime-int8).')
    parser.add_argument('--config_file', type=Path, required=True, help='MMPose config the model was trained with')
    parser.add_argument('--load_weight_path', type=Path, required=True, help='checkpoint (.pth) from step 3')
    parser.add_argument('--images', nargs='+', required=True,
                        help='calibration radiographs: files or folders (searched recursively), e.g. step 2\'s '
                             'DIR/images of training images; labels are not needed')
    parser.add_argument('--num-images', type=int, default=DEFAULT_NUM_IMAGES,
                        help='how many of them, spread evenly over the sorted list (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing int8 files of these weights')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    outputs = quantize_checkpoint(args.config_file, args.load_weight_path, args.images, num_images=args.num_images,
                                  overwrite=args.overwrite)
    print('wrote ' + ' and '.join(str(path) for path in outputs.values()))
    return 0


if __name__ == '__main__':
    run_cli(main)
