"""The cascade's two networks through an inference engine made for CPUs (ONNX Runtime) instead of PyTorch.

Why: on a CPU without bfloat16 hardware (e.g. an AVX2-only AMD EPYC) step 5 spends most of its time in the
cascade's two narrow HRNets (31 GFLOP per image, 26 of them the local stage's 38 patches). ONNX Runtime runs the
same float32 networks with its own kernels and fused convolution + add + ReLU near the CPU's peak, and its threads
wait without spinning, so the slice reader and the NumPy decoding beside them slow it less than they slow PyTorch's
OpenMP threads. On 2 idle cores of that EPYC: global network 31 instead of 42 ms, local 155 instead of 210 ms;
step 5 0.28-0.33 instead of 0.44-0.47 s per image (``python -m benchmarks.engine_speed``). OpenVINO 2026.4 was as
fast (30 and 151 ms) but took 60 MB more memory and is a 59 MB wheel against 24 MB. Only the networks change
hands: preprocessing, patch cutting and the NumPy decoding stay the cascade's own.

* The **global network** (normalised ``N x 3 x H x W`` image -> ``N x K x h x w`` heatmaps) and the **local
  network** (normalised ``P x 3 x 128 x 128`` patches -> heatmaps, dynamic ``P``) of a built, batch-norm-folded
  :class:`~cldetection.cascade.CascadeLandmarkEstimator` are exported to ONNX (TorchScript exporter, float32).
* The files are cached in ``<checkpoint>.onnx/`` beside the checkpoint, named by a digest of what was exported
  (the folded weights, the networks' structure, torch / MMPose versions), so a changed checkpoint or config
  re-exports and an unchanged one is loaded in a fraction of a second. Each file is written under a temporary
  name and renamed; stale files are removed. Where that folder cannot be written (a read-only model folder in
  a container) the cache goes to the system's temporary folder instead.
* :meth:`CascadeLandmarkEstimator.set_engine <cldetection.cascade.CascadeLandmarkEstimator.set_engine>` attaches
  the sessions; the model then predicts through them (training always runs PyTorch).

Which engine: ``auto`` picks ONNX Runtime on a CPU for a cascade whose prediction precision is float32 there,
when ``onnxruntime`` and ``onnx`` are installed -- with the int8 networks of :mod:`cldetection.quantize` when
they have been made for these weights, the float32 ones otherwise; PyTorch otherwise (a GPU; a CPU with bfloat16
hardware, where the config's ``precision='auto'`` runs PyTorch in bfloat16; single-stage models and ensembles,
which have no engine path). ``onnxruntime`` and ``onnxruntime-int8`` ask for one of the two sets of files.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .cascade import CascadeLandmarkEstimator
from .errors import fail
from .precision import uses_bf16

logger = logging.getLogger(__name__)

#: ``--engine`` values: ``auto`` resolves to one of the others (:func:`resolve_engine`, :func:`load_engine`).
ENGINES: tuple[str, ...] = ('auto', 'pytorch', 'onnxruntime', 'onnxruntime-int8')
#: What the ONNX Runtime engines need: the exporter needs ``onnx``, the sessions ``onnxruntime``.
ENGINE_PACKAGES = {'onnxruntime': ('onnxruntime', 'onnx'), 'onnxruntime-int8': ('onnxruntime', 'onnx')}
#: The int8 networks' files (:mod:`cldetection.quantize`) end so, beside the float files of the same key.
INT8_SUFFIX = '.int8.onnx'
#: The cascade's two networks, as exported (:func:`cascade_networks`) and named in the files (:func:`network_files`).
NETWORK_NAMES = ('global', 'local')
#: ONNX operator set of the exported files (ONNX Runtime 1.31 runs up to 23; 17 has everything an HRNet needs).
OPSET = 17
#: Changes whenever the export itself changes (wrapper, names, options), so old caches are not reused.
EXPORT_FORMAT = 1
INPUT_NAME, OUTPUT_NAME = 'input', 'heatmaps'

#: A network as the cascade calls it: a float32 CPU tensor in, a float32 CPU tensor out.
Network = Callable[[torch.Tensor], torch.Tensor]


def check_engine(engine: str) -> str:
    """``engine`` lower-cased, or a one-line error naming the known ones."""
    name = str(engine).strip().lower()
    if name not in ENGINES:
        fail(None, f'--engine must be one of {", ".join(ENGINES)}, got {engine!r}')
    return name


def engine_installed(engine: str) -> bool:
    """Whether the packages ``engine`` needs are importable (PyTorch always is)."""
    return all(importlib.util.find_spec(package) is not None for package in ENGINE_PACKAGES.get(engine, ()))


def resolve_engine(engine: str, model: torch.nn.Module, device: str, folded: bool) -> str:
    """The engine that runs ``model`` on ``device``: ``engine`` itself when it can, or a one-line error saying
    why not; ``auto`` -> ``onnxruntime`` where it applies and is installed (see the module's docstring), else
    ``pytorch``."""
    engine = check_engine(engine)
    if engine == 'pytorch':
        return engine
    on_cpu, cascade = torch.device(device).type == 'cpu', isinstance(model, CascadeLandmarkEstimator)
    if engine == 'auto':
        usable = (on_cpu and folded and cascade and engine_installed('onnxruntime')
                  and not uses_bf16(model.precision['test'], device))
        return 'onnxruntime' if usable else 'pytorch'
    if not cascade:
        fail(None, f'--engine {engine} runs cascades (CascadeLandmarkEstimator) only; this model is a '
                   f'{type(model).__name__}: use --engine pytorch (or auto)')
    if not on_cpu:
        fail(None, f'--engine {engine} runs on the CPU; with --device {device} use --engine pytorch (or auto)')
    if not folded:
        fail(None, f'--engine {engine} runs the networks with their batch norms folded; do not switch folding off')
    if not engine_installed(engine):
        fail(None, f'--engine {engine} needs the packages {" and ".join(ENGINE_PACKAGES[engine])}: '
                   'pip install --no-deps --only-binary=:all: -r requirements.lock')
    if uses_bf16(model.precision['test'], device):
        logger.info('--engine %s runs float32; the model would have predicted in bfloat16 with PyTorch', engine)
    return engine


# ------------------------------------------------------------------------------------------------ export
class _HeatmapNetwork(torch.nn.Module):
    """backbone (+ neck) + heatmap head as one module (shared, not copied): normalised images in, heatmaps out,
    float32 and no autocast, whatever the model's ``precision``."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Module,
                 neck: Optional[torch.nn.Module] = None) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.backbone(inputs)
        if self.neck is not None:
            features = self.neck(features)
        return self.head.forward(features)


def cascade_networks(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, tuple[int, ...]]]:
    """The cascade's two networks and an input shape of each (``N x 3 x h x w``), by name."""
    width, height = model.head.decoder.input_size
    patch_w, patch_h = model.local.patch_size
    neck = model.neck if model.with_neck else None
    # in eval mode like the model: the exporter puts a module back in the mode it found it in, and a wrapper in
    # training mode (a new module's) would switch the model's networks to training mode with it
    return {'global': (_HeatmapNetwork(model.backbone, model.head, neck).eval(), (1, 3, height, width)),
            'local': (_HeatmapNetwork(model.local.backbone, model.local.head).eval(), (2, 3, patch_h, patch_w))}


def export_key(model: torch.nn.Module) -> str:
    """A digest of everything the exported files depend on: the networks' weights and structure (so a changed
    checkpoint, or a config that builds other networks, gets new files) and the exporter's versions. Hashing
    the ~25 MB of weights takes tens of milliseconds; reading the checkpoint file again would not see a config
    change."""
    import mmpose

    digest = hashlib.sha256(f'format {EXPORT_FORMAT} opset {OPSET} torch {torch.__version__} '
                            f'mmpose {mmpose.__version__}'.encode())
    for name, (network, shape) in cascade_networks(model).items():
        digest.update(f'{name} {shape[1:]} {network!r}'.encode())
        for key, tensor in network.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().to('cpu', torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _export(network: torch.nn.Module, shape: tuple[int, ...], path: Path) -> None:
    from .challenge_io import atomic_output

    with atomic_output(path) as part, torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice and tracer warnings are about the exporter, not about
        # anything a user can change; the exported graph is checked against PyTorch by the tests
        warnings.simplefilter('ignore')
        torch.onnx.export(network, (torch.zeros(shape),), str(part), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}})


def cache_folder(checkpoint_file: str | Path) -> Path:
    """Where the ONNX files of a checkpoint are kept: ``<checkpoint>.onnx/`` beside it."""
    checkpoint_file = Path(checkpoint_file)
    return checkpoint_file.with_name(checkpoint_file.name + '.onnx')


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def network_files(folder: str | Path, key: str, int8: bool = False) -> dict[str, Path]:
    """The files of a cascade's two networks exported under ``key`` (:func:`export_key`) in ``folder``:
    ``<key>.global.onnx`` and ``<key>.local.onnx``, or with ``int8`` the ones :mod:`cldetection.quantize` makes of
    them, ``<key>.global.int8.onnx`` and ``<key>.local.int8.onnx``."""
    suffix = INT8_SUFFIX if int8 else '.onnx'
    return {name: Path(folder) / f'{key}.{name}{suffix}' for name in NETWORK_NAMES}


def find_int8_networks(key: str, folders: Sequence[str | Path]) -> Optional[dict[str, Path]]:
    """The int8 files of the export ``key`` in the first of ``folders`` that holds both, or None."""
    for folder in dict.fromkeys(map(Path, folders)):
        paths = network_files(folder, key, int8=True)
        if all(path.is_file() for path in paths.values()):
            return paths
    return None


def export_networks(model: torch.nn.Module, folder: str | Path, key: Optional[str] = None) -> dict[str, Path]:
    """The ONNX files of ``model``'s two networks in ``folder`` (:func:`network_files` of its ``key``, computed
    when not given), exported unless already there; other ``*.onnx`` files in it (earlier checkpoints or configs)
    are removed. ``model`` must be in eval mode with its batch norms folded (:func:`cldetection.precision.
    fold_batch_norms`). A folder that cannot be written is replaced by one under the system's temporary folder."""
    if model.training:
        raise ValueError('export_networks: the model is in training mode (call model.eval() and fold it first)')
    folder = Path(folder)
    if not _writable(folder):
        fallback = Path(tempfile.gettempdir()) / 'cldetection-onnx' / folder.name
        logger.info('%s is not writable: caching the ONNX files in %s', folder, fallback)
        folder = fallback
        folder.mkdir(parents=True, exist_ok=True)
    key = key or export_key(model)
    networks = cascade_networks(model)
    paths = network_files(folder, key)
    if all(path.is_file() for path in paths.values()):
        logger.info('reusing the ONNX networks in %s (%s)', folder, key)
        return paths
    for name, (network, shape) in networks.items():
        if not paths[name].is_file():
            logger.info('exporting the %s network to %s', name, paths[name])
            _export(network, shape, paths[name])
    # other keys' files, float or int8, are stale; this key's int8 files (cldetection.quantize) are kept
    for stale in folder.glob('*.onnx'):
        if not stale.name.startswith(f'{key}.'):
            stale.unlink(missing_ok=True)
    return paths


# ---------------------------------------------------------------------------------------------- sessions
class OnnxRuntimeNetwork:
    """One exported network in an ONNX Runtime CPU session, called like the PyTorch module it replaces.

    As many threads as PyTorch uses (``OMP_NUM_THREADS`` / ``torch.set_num_threads`` apply to both), so that the
    engine shares the cores as PyTorch would (e.g. the test workers). Its threads sleep when a run ends instead of
    spinning: between two runs step 5 cuts and decodes patches in NumPy and reads the next slice in another thread,
    which spinning threads slowed more than it gained (2 idle cores: 0.30-0.35 s per image spinning, 0.26-0.29 not).
    """

    def __init__(self, path: Path, threads: Optional[int] = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.log_severity_level = 3  # errors only: its warnings name graph internals, nothing to act on
        self.path = path
        self.session = onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(inputs.detach().to('cpu', torch.float32).numpy())
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


@dataclass(frozen=True)
class InferenceEngine:
    """The sessions of a cascade's two networks (what :meth:`CascadeLandmarkEstimator.set_engine` takes)."""
    name: str
    global_network: Network
    local_network: Network
    files: dict[str, Path]


def load_engine(engine: str, model: torch.nn.Module, checkpoint_file: str | Path,
                int8_if_present: bool = False) -> InferenceEngine:
    """Export ``model``'s networks (or reuse the cache beside ``checkpoint_file``) and open them in ``engine``
    (a value :func:`resolve_engine` returned, not ``pytorch``): ``onnxruntime-int8`` opens the int8 files of
    :mod:`cldetection.quantize` (a one-line error when there are none), ``onnxruntime`` the float files, or the int8
    ones when ``int8_if_present`` and they exist (``--engine auto``)."""
    if engine not in ENGINE_PACKAGES:
        raise ValueError(f'load_engine: no inference engine {engine!r}; known: {", ".join(ENGINE_PACKAGES)}')
    key = export_key(model)
    files = export_networks(model, cache_folder(checkpoint_file), key)
    # beside the float files, or beside the weights where those went to the temporary folder (a read-only model
    # folder, e.g. a container's, that came with its int8 files: python -m cldetection.quantize, step 6's tarball)
    quantized = find_int8_networks(key, [files['global'].parent, cache_folder(checkpoint_file)])
    if engine == 'onnxruntime-int8' and quantized is None:
        fail(checkpoint_file, 'has no int8 networks for --engine onnxruntime-int8 (looked for '
                              f'{network_files(files["global"].parent, key, int8=True)["local"].name} in '
                              f'{files["global"].parent}); make them with python -m cldetection.quantize, or use '
                              '--engine onnxruntime')
    if engine == 'onnxruntime-int8' or (int8_if_present and quantized is not None):
        engine, files = 'onnxruntime-int8', quantized
    return InferenceEngine(engine, OnnxRuntimeNetwork(files['global']), OnnxRuntimeNetwork(files['local']), files)


__all__ = ('ENGINES', 'INT8_SUFFIX', 'InferenceEngine', 'OnnxRuntimeNetwork', 'cache_folder', 'cascade_networks',
           'check_engine', 'engine_installed', 'export_key', 'export_networks', 'find_int8_networks', 'load_engine',
           'network_files', 'resolve_engine')
