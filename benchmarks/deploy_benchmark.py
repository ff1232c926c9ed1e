"""ONNX Runtime against eager PyTorch for whole deployed models, in the same run, on the CPU.

    python -m benchmarks.deploy_benchmark                      # both models, 2 threads
    python -m benchmarks.deploy_benchmark --models upernet-crossformer-s --runs 5

Each model (a published config with random weights: speed does not depend on the values) is deployed with
``swin_backbones.deploy`` (export and check included) to a temporary folder; then, taking turns after a
warm-up, on the same preprocessed image:

* eager: mmdet's / mmseg's own ``predict`` of the PyTorch model (this package's backbone on its fast path),
  with the results in the original image's pixels (boxes rescaled, masks pasted; the class map);
* onnxruntime: the end-to-end graph in an onnxruntime session, plus for detectors what mmdeploy's backend
  model does after it (boxes rescaled, masks pasted); the class map is the graph's output. The graph alone
  is timed too.

Both use ``--threads`` threads (torch.set_num_threads, the session's intra-op threads). Prints the median
seconds of each, eager / onnxruntime (above 1: onnxruntime is faster) and the load average (other
processes on a shared machine slow both alike, as they take turns).
"""
import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from typing import Dict, List

import numpy as np
import torch

# name: (config, image (H, W))
MODELS = {
    'mask-rcnn-swin-t': ('swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py', (800, 1333)),
    'upernet-crossformer-s': ('crossformer/crossformer-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', (512, 512)),
}


def trained_like_weights_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights that behave like trained ones where comparing results needs it: weights N(0, 1 / fan-in)
    so that scores spread apart (NMS and top-k are not decided by rounding among ties), box regressions a tenth
    of that (no degenerate boxes, whose masks rounding decides), mask logits three times (masks away from the
    0.5 threshold); norms 1 + N(0, 0.1^2), biases N(0, 0.1^2)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module_name, module in model.named_modules():
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator)
                if name == 'weight' and param.dim() > 1:
                    gain = 0.1 if 'reg' in module_name else 3.0 if 'conv_logits' in module_name else 1.0
                    param.copy_(noise * gain / param[0].numel() ** 0.5)
                elif name == 'weight':
                    param.copy_(1 + 0.1 * noise)
                else:
                    param.copy_(0.1 * noise)
    return model


def build_model(cfg) -> torch.nn.Module:
    from mmengine.registry import MODELS as REGISTRY
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return REGISTRY.build(cfg.model)


def preprocessed(cfg, out: str, image: np.ndarray, deployed: bool):
    """(data, input batch) of one image (a BGR array) as the test pipeline and data preprocessor make it: the
    PyTorch model's own (``deployed=False``), or the deployed model's (``out``/model_config.py: a detector's
    batch is not padded there, the graph pads it)."""
    from mmdeploy.apis import build_task_processor
    from mmengine.config import Config
    from mmengine.registry import MODELS as REGISTRY
    from mmengine.registry import DefaultScope
    if deployed:
        cfg = Config.fromfile(os.path.join(out, 'model_config.py'))
    deploy_cfg = Config.fromfile(os.path.join(out, 'deploy_config.py'))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        processor = build_task_processor(copy.deepcopy(cfg), deploy_cfg, 'cpu')
        return processor.create_input([image], None, data_preprocessor=REGISTRY.build(cfg.model.data_preprocessor))


def _median_times(steps: Dict[str, callable], warmup: int, runs: int) -> Dict[str, float]:
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(runs):
        for name, step in steps.items():  # taking turns: a load on the machine hits each alike
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def benchmark(name: str, threads: int, warmup: int, runs: int, folder: str) -> Dict[str, float]:
    import onnxruntime as ort
    from mmdeploy.codebase.mmdet.deploy.object_detection_model import End2EndModel
    from mmengine.config import Config

    import swin_backbones
    from swin_backbones.deployment.run import generated_image
    config, (height, width) = MODELS[name]
    cfg = Config.fromfile(swin_backbones.config_path(config))
    cfg.model.backbone.init_cfg = None
    model = trained_like_weights_(build_model(cfg)).eval()
    checkpoint = os.path.join(folder, f'{name}.pth')
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    out = os.path.join(folder, name)
    report = swin_backbones.deploy(cfg, checkpoint, out)
    print('\n'.join(report.lines()), flush=True)

    image = generated_image(height, width, seed=0)
    data, inputs = preprocessed(cfg, out, image, deployed=False)
    _, deployed_inputs = preprocessed(cfg, out, image, deployed=True)
    samples = data['data_samples']
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(out, 'end2end.onnx'), options, providers=['CPUExecutionProvider'])
    names = [output.name for output in session.get_outputs()]
    feed = {'input': deployed_inputs.numpy()}
    meta = samples[0].metainfo
    scale = torch.tensor(meta['scale_factor'], dtype=torch.float32).repeat(2)

    def eager():
        with torch.no_grad():
            model(inputs, [sample.clone() for sample in samples], mode='predict')

    def graph():
        session.run(names, feed)

    def onnxruntime():
        outputs = dict(zip(names, session.run(names, feed)))
        if 'dets' in outputs:
            dets = torch.from_numpy(outputs['dets'][0])
            kept = dets[:, 4] > 0
            boxes = dets[kept, :4] / scale
            if 'masks' in outputs:
                masks = torch.from_numpy(outputs['masks'][0])[kept]
                End2EndModel.postprocessing_masks(boxes, masks, meta['ori_shape'][1], meta['ori_shape'][0]) >= 0.5

    torch.set_num_threads(threads)
    times = _median_times({'eager': eager, 'onnxruntime': onnxruntime, 'graph': graph}, warmup, runs)
    times['input'] = 'x'.join(str(side) for side in inputs.shape)  # eager's (onnxruntime pads in the graph)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--runs', type=int, default=3)
    args = parser.parse_args(argv)
    import onnxruntime

    from benchmarks.benchmark import _load, cpu_description
    print(f'{cpu_description()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, '
          f'{args.threads} threads, Python {platform.python_version()}; load average {_load()}', flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            times = benchmark(name, args.threads, args.warmup, args.runs, folder)
            print(f'{name} input {times["input"]}: eager PyTorch {times["eager"]:.2f} s, onnxruntime '
                  f'{times["onnxruntime"]:.2f} s (the graph alone {times["graph"]:.2f} s), eager / onnxruntime '
                  f'{times["eager"] / times["onnxruntime"]:.2f}; load average {_load()}', flush=True)


if __name__ == '__main__':
    main()
