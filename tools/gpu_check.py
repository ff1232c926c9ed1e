"""The GPU check: the device-parametrised tests, the benchmark against mmdet's Swin-T and the authors'-style
CrossFormer-S at the detection size, and a description of the machine, in one run that writes a report.

    bash tools/gpu_check.sh --out DIR                        # a GPU machine (installs the carried wheels first)
    bash tools/gpu_check.sh --device cpu --quick --out DIR   # any machine: small benchmark sizes
    python tools/gpu_check.py --out DIR --parts tests        # one part again (parts below)

Parts, in order, each in a process of its own with a time limit (a part that overruns is stopped, reported
as timed out, and the next one starts):

* environment: the device (name, memory, capability), torch, CUDA, cuDNN, the driver, Python and the
  packages, and how mmdet's Swin was loaded: mmdet's package modules need mmcv's compiled ops; without
  them (mmcv-lite) ``mmdet/models/backbones/swin.py`` and the module it takes PatchEmbed and PatchMerging
  from are loaded from their source files alone.
* tests: ``pytest tests/test_device.py --device DEVICE`` (fast against plain in fp32 and under fp16 and bf16
  autocast, with_cp, save_memory, 1 x 1, 97 x 131 and 800 x 1333 on a GPU, batches 1 and 2); each test's
  outcome and measured differences go to DIR/tests.jsonl as it ends.
* benchmark-swin, benchmark-crossformer: Swin-T against mmdet's SwinTransformer at 800 x 1333 and
  CrossFormer-S against the authors'-style plain CrossFormer at 800 x 1344, batch 2, bf16 autocast (fp32 on
  a CPU without bf16 instructions):
  outputs in fp32 against the reference first, then inference and a training step (the fastest of
  --runs after --warmup, models taking turns) and their peak memory, for ours (default and save_memory),
  our impl='plain' and the reference. ``--quick`` runs them at 128 x 192, one warm-up and one run.

* deploy (optional): the toy Mask R-CNN + Swin and UperNet + CrossFormer deployed with ``swin_backbones.deploy``
  (exported on the CPU) and checked against PyTorch in onnxruntime's TensorRT and CUDA execution providers
  (TF32 off); skipped, saying why, without the deploy extra, mmcv's compiled ops, or onnxruntime-gpu's providers
  (``pip install onnxruntime-gpu``), and with --device cpu.

DIR gets report.txt and report.json (rewritten after every part, so a run cut short still leaves one),
tests.jsonl and log.txt (every part's output). The exit status is 0 when every part finished and no test
failed.
"""
import argparse
import datetime
import importlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from collections import Counter, defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Seconds each part may take. The arithmetic is small for an H200: the tests do about 12 TFLOP at 800 x 1333
# (62 training steps and 56 inferences of their small models, 32 to 71 GFLOP a forward at batch 2, two
# thirds in fp32) and less at the other sizes; each benchmark about 60 TFLOP in bf16 (Swin-T and
# CrossFormer-S, about 0.5 TFLOP a forward at batch 2, 64 steps of 4 models). That is seconds even at a
# tenth of the chip's rates; start-up, CUDA initialisation and the first-use kernel choices take most of
# the time. The limits add up to 7.25 minutes so that, with the wheels' installation and a first import
# of torch from a cold disk, a run stays inside 8; the deploy part adds seconds where it is skipped (the GPU
# machine's usual environment: no mmdeploy) and up to 2.5 minutes where it runs.
PART_LIMITS = {'environment': 45, 'tests': 210, 'benchmark-swin': 90, 'benchmark-crossformer': 90, 'deploy': 150}
# (backbone name, size) of each benchmark; the authors' CrossFormer code takes multiples of 32 only.
BENCHMARKS = {'swin': ('swin-t', '800x1333'), 'crossformer': ('crossformer-s', '800x1344')}
QUICK_SIZE = '128x192'
BATCH = 2
# What the optimised backbones should reach on a GPU in the training step: speed against the reference
# (reference time / ours), and peak memory against it.
TARGETS = {'swin': dict(train_speed=1.5, memory=0.8), 'crossformer': dict(train_speed=2.5, memory=0.8)}


def benchmark_module():
    """The repository's benchmark (building the pairs, time_steps, peak_memory); its only import here."""
    from benchmarks import benchmark
    return benchmark


# ------------------------------------------------------------------------------------------- mmdet's Swin
def import_mmdet_swin(from_source: bool = False) -> str:
    """Makes ``mmdet.models.backbones.swin`` importable (what the benchmark builds its Swin reference from)
    and says how: by the package import, or where that fails (mmcv without compiled ops) or ``from_source``
    asks, from the source files alone. Then the packages above swin.py (mmdet.models, .layers,
    .layers.transformer, .backbones, mmdet.utils) are entered as empty packages over their real folders, so
    that only swin.py, mmdet/models/layers/transformer/utils.py (PatchEmbed, PatchMerging),
    mmdet/utils/typing_utils.py and mmdet/registry.py run: mmdet's code, none of its compiled-op imports."""
    reason = 'asked for'
    if not from_source:
        try:
            importlib.import_module('mmdet.models.backbones.swin')
            return f'mmdet {importlib.import_module("mmdet").__version__}, package import'
        except ImportError as error:
            reason = f'the package import failed: {error}'
    import mmdet  # checks the mmcv and mmengine versions, imports nothing compiled
    root = os.path.dirname(mmdet.__file__)
    for name in ('mmdet.utils', 'mmdet.models', 'mmdet.models.layers', 'mmdet.models.layers.transformer',
                 'mmdet.models.backbones'):
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, *name.split('.')[1:])]
        sys.modules[name] = package
    typing_utils = importlib.import_module('mmdet.utils.typing_utils')
    sys.modules['mmdet.utils'].__dict__.update(
        {key: value for key, value in vars(typing_utils).items() if not key.startswith('_')})
    transformer_utils = importlib.import_module('mmdet.models.layers.transformer.utils')
    layers = sys.modules['mmdet.models.layers']
    layers.PatchEmbed, layers.PatchMerging = transformer_utils.PatchEmbed, transformer_utils.PatchMerging
    swin = importlib.import_module('mmdet.models.backbones.swin')
    return f'mmdet {mmdet.__version__}, {swin.__file__} loaded from its source file ({reason})'


# ------------------------------------------------------------------------------------------------- parts
def _package_version(name):
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit():
    try:
        return subprocess.run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def part_environment(args, record):
    import torch
    device = torch.device(args.device)
    info = dict(device=str(device), python=platform.python_version(), torch=torch.__version__,
                cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), commit=_git_commit(),
                packages={name: _package_version(name) for name in (
                    'mmengine', 'mmcv', 'mmcv-lite', 'mmdet', 'numpy', 'timm', 'onnxruntime', 'pytest')},
                mmdet_swin=import_mmdet_swin(args.mmdet_swin_from_source))
    if device.type == 'cuda':
        properties = torch.cuda.get_device_properties(device)
        info.update(name=properties.name, memory_gib=round(properties.total_memory / 2 ** 30, 1),
                    capability=f'{properties.major}.{properties.minor}',
                    multiprocessors=properties.multi_processor_count)
        try:
            info['driver'] = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            info['driver'] = None
    else:
        info.update(name=benchmark_module().cpu_description(), threads=torch.get_num_threads())
    record(info)


class TestRecorder:
    """pytest plugin: one JSON line per test as it ends (outcome, seconds, the numbers the test recorded, the
    failure's message), written at once, so that a run cut short still says what ran."""

    def __init__(self, path):
        self.path = path
        self.outcomes = Counter()

    def pytest_runtest_logreport(self, report):
        if report.when != 'call' and report.passed:
            return
        if hasattr(report, 'wasxfail'):
            outcome = 'xfailed' if report.skipped else 'xpassed'
        elif report.when != 'call' and report.failed:
            outcome = 'error'
        else:
            outcome = report.outcome
        self.outcomes[outcome] += 1
        entry = dict(test=report.nodeid.split('::', 1)[-1], outcome=outcome, seconds=round(report.duration, 3),
                     measured=dict(report.user_properties))
        if report.failed:
            crash = getattr(report.longrepr, 'reprcrash', None)
            entry['message'] = crash.message if crash else str(report.longrepr).strip().splitlines()[-1]
        with open(self.path, 'a') as f:
            f.write(json.dumps(entry) + '\n')


def part_tests(args, record):
    import pytest
    recorder = TestRecorder(os.path.join(args.out, 'tests.jsonl'))
    command = [os.path.join('tests', 'test_device.py'), '--device', args.device, '-p', 'no:cacheprovider', '-q']
    exit_code = int(pytest.main(command, plugins=[recorder]))
    record(dict(command='pytest ' + ' '.join(command), exit_code=exit_code, outcomes=dict(recorder.outcomes)))
    if exit_code:
        sys.exit(f'pytest exited with {exit_code}')


def _benchmark_part(model_name):
    def part_benchmark(args, record):
        import torch
        benchmark = benchmark_module()
        if model_name == 'swin':
            import_mmdet_swin(args.mmdet_swin_from_source)
        from swin_backbones.models.ops.rules import onednn_takes
        device = torch.device(args.device)
        # A CPU without bf16 instructions emulates bf16 autocast at a small fraction of fp32's speed.
        dtype_name = 'bf16' if device.type != 'cpu' or onednn_takes(device, torch.bfloat16) else 'fp32'
        dtype = benchmark.DTYPES[dtype_name]
        name, size = BENCHMARKS[model_name]
        size = QUICK_SIZE if args.quick else size
        height, width = (int(side) for side in size.split('x'))
        torch.manual_seed(0)
        ours = benchmark.build_ours(name)
        reference, reference_name = benchmark.reference_for(ours, name)
        models = {'ours': ours, 'ours save_memory': benchmark.twin(ours, name, save_memory=True),
                  'ours plain': benchmark.twin(ours, name, impl='plain'), 'reference': reference}
        for model in models.values():
            model.to(device)
            model.eval()  # mmdet's train() returns None: no chaining
        x = torch.randn(BATCH, 3, height, width, device=device)
        result = dict(model=name, reference=reference_name, size=size, batch=BATCH, dtype=dtype_name,
                      warmup=args.warmup, runs=args.runs, fp32_tolerance=benchmark.FP32_TOLERANCE, rows=[])
        with torch.inference_mode(), benchmark.exact_fp32():
            expected = reference(x)
            result['fp32_max_abs_diff'] = {
                label: max((a - b).abs().max().item() for a, b in zip(model(x), expected))
                for label, model in models.items() if label != 'reference'}
            result['fp32_max_abs'] = max(out.abs().max().item() for out in expected)
        del expected
        result['reference_forward_gflop'] = benchmark.forward_flops(reference, x) / 1e9
        record(result)
        for mode in benchmark.MODES:
            seconds = benchmark.time_steps(models, x, mode, device, dtype, args.warmup, args.runs)
            memory = {label: benchmark.peak_memory(model, x, mode, device, dtype) / 2 ** 20
                      for label, model in models.items()}
            result['rows'].append(dict(mode=mode, seconds=seconds, memory_mib=memory))
            record(result)
        if max(result['fp32_max_abs_diff'].values()) > benchmark.FP32_TOLERANCE:
            sys.exit(f'fp32 outputs differ from the reference by more than {benchmark.FP32_TOLERANCE}: '
                     f'{result["fp32_max_abs_diff"]}')
    return part_benchmark


# (toy config, config options, the onnxruntime execution providers to check it in, each list in preference order)
DEPLOY_CASES = (
    ('toy/mask-rcnn_swin-toy_fpn_toy-coco.py', {},
     (['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider'],
      ['CUDAExecutionProvider', 'CPUExecutionProvider'])),
    ('toy/upernet_crossformer-toy_toy-ade.py', {'test_pipeline.1.scale': (320, 320)},
     (['CUDAExecutionProvider', 'CPUExecutionProvider'], )),
)


def part_deploy(args, record):
    os.environ['NVIDIA_TF32_OVERRIDE'] = '0'  # full fp32 in cuDNN and cuBLAS: the check's limits assume it
    missing = [name for name in ('mmdeploy', 'onnxruntime', 'aenum', 'mmseg')
               if importlib.util.find_spec(name) is None]
    if not missing:
        try:
            importlib.import_module('mmcv.ops')
        except ImportError:
            missing.append("mmcv's compiled ops")
    if args.device == 'cpu':
        record(dict(skipped="--device cpu: this part checks onnxruntime's CUDA and TensorRT providers"))
        return
    if missing:
        record(dict(skipped=f'{", ".join(missing)} missing (bash tools/install.sh --with deploy, then '
                            'pip install onnxruntime-gpu)'))
        return
    import onnxruntime as ort
    available = ort.get_available_providers()
    if 'CUDAExecutionProvider' not in available:
        record(dict(skipped=f'onnxruntime {ort.__version__} has no CUDA provider ({", ".join(available)}): '
                            'pip install onnxruntime-gpu'))
        return
    import torch
    from mmengine.config import Config

    from benchmarks.deploy_benchmark import build_model, trained_like_weights_
    from swin_backbones import DeployError, deploy
    result = dict(onnxruntime=ort.__version__, available=available, runs=[])
    with tempfile.TemporaryDirectory() as folder:
        for config, options, provider_lists in DEPLOY_CASES:
            cfg = Config.fromfile(os.path.join(REPO, 'configs', config))
            cfg.merge_from_dict(options)
            checkpoint = os.path.join(folder, 'weights.pth')
            torch.save({'state_dict': trained_like_weights_(build_model(cfg)).state_dict()}, checkpoint)
            for providers in provider_lists:
                run = dict(config=config, providers=providers)
                if providers[0] not in available:
                    run['skipped'] = f'onnxruntime has no {providers[0]}'
                else:
                    try:
                        run['lines'] = deploy(cfg, checkpoint, os.path.join(folder, 'out'), force=True,
                                              providers=providers).lines()
                    except DeployError as error:
                        run['error'] = str(error)
                result['runs'].append(run)
                record(result)
    failed = [run for run in result['runs'] if 'error' in run]
    if failed:
        sys.exit(f'{len(failed)} deployment check(s) failed: ' + '; '.join(run['error'] for run in failed))


PARTS = {'environment': part_environment, 'tests': part_tests,
         'benchmark-swin': _benchmark_part('swin'), 'benchmark-crossformer': _benchmark_part('crossformer'),
         'deploy': part_deploy}


def run_part(args):
    """In the part's own process: runs it, writing its result (each update) to --result."""
    def record(result):
        with open(args.result + '.tmp', 'w') as f:
            json.dump(result, f)
        os.replace(args.result + '.tmp', args.result)
    PARTS[args.part](args, record)


# ------------------------------------------------------------------------------------------------ report
def tests_section(out):
    path = os.path.join(out, 'tests.jsonl')
    if not os.path.exists(path):
        return ['  no test ran']
    with open(path) as f:
        entries = [json.loads(line) for line in f]
    outcomes = Counter(entry['outcome'] for entry in entries)
    lines = ['  ' + ', '.join(f'{n} {outcome}' for outcome, n in sorted(outcomes.items()))]
    by_function = defaultdict(list)
    for entry in entries:
        by_function[entry['test'].split('[')[0]].append(entry)
    lines.append('  largest measured differences per test function (relative to each tensor\'s magnitude):')
    for function, group in by_function.items():
        outcomes = Counter(e['outcome'] for e in group)
        largest = {}
        for entry in group:
            for key, value in entry['measured'].items():
                largest[key] = max(largest.get(key, value), value)
        lines.append(f'  {function}: ' + ', '.join(f'{n} {o}' for o, n in sorted(outcomes.items())))
        if largest:
            lines += textwrap.wrap(', '.join(f'{key} {value:.2g}' for key, value in largest.items()), width=110,
                                   initial_indent='    ', subsequent_indent='    ')
    for entry in entries:
        if entry['outcome'] in ('failed', 'error'):
            lines.append(f'  FAILED {entry["test"]}: {entry.get("message", "")}')
    return lines


def benchmark_section(name, result, device_type):
    lines = [f'  {result["model"]} vs {result["reference"]}, {result["size"]}, batch {result["batch"]}, '
             + ('bf16 autocast' if result['dtype'] == 'bf16' else 'fp32 (this CPU has no bf16 instructions)')
             + f', fastest of {result["runs"]} runs',
             f'  after {result["warmup"]} warm-up; reference forward {result["reference_forward_gflop"]:.0f} GFLOP',
             '  fp32 outputs, max |diff| from the reference: '
             + ', '.join(f'{label} {diff:.2g}' for label, diff in result['fp32_max_abs_diff'].items()),
             f'  (tolerance {result["fp32_tolerance"]:g}; max |reference| {result["fp32_max_abs"]:.3g})',
             '  (speed: reference time / time; MiB: '
             + ('the peak allocation of a step' if device_type == 'cuda'
                else 'the activations a training step keeps for backward') + '; memory: MiB / reference MiB)',
             f'  {"mode":>8} {"model":<17} {"ms":>9} {"speed":>7} {"MiB":>8} {"memory":>7}']
    for row in result['rows']:
        seconds, memory = row['seconds'], row['memory_mib']
        for label in seconds:
            memory_ratio = memory[label] / memory['reference'] if memory['reference'] else None
            lines.append(f'  {row["mode"]:>8} {label:<17} {seconds[label] * 1e3:9.1f} '
                         f'{seconds["reference"] / seconds[label]:6.2f}x {memory[label]:8.0f} '
                         + (f'{memory_ratio:6.2f}x' if memory_ratio else f'{"-":>7}'))
        if row['mode'] == 'train' and device_type == 'cuda':
            target = TARGETS[name]
            speed, memory_ratio = seconds['reference'] / seconds['ours'], memory['ours'] / memory['reference']
            met = speed >= target['train_speed'] and memory_ratio <= target['memory']
            lines.append(f'  target for ours in training: speed >= {target["train_speed"]}x, memory <= '
                         f'{target["memory"]}x: {"met" if met else "NOT met"}')
    return lines


def deploy_section(result):
    if 'skipped' in result:
        return [f'  skipped: {result["skipped"]}']
    lines = []
    for run in result['runs']:
        lines.append(f'  {run["config"]} with {", ".join(run["providers"])}:')
        outcome = run.get('lines') or [run.get('skipped') or f'FAILED: {run.get("error")}']
        lines += [f'    {line}' for line in outcome]
    return lines


def render(report):
    environment = report['parts'].get('environment', {}).get('result') or {}
    lines = [f'GPU check, {report["started"]}: {report["command"]}',
             f'device: {environment.get("name", report["device"])}'
             + (f', {environment["memory_gib"]} GiB, capability {environment["capability"]}, '
                f'{environment["multiprocessors"]} multiprocessors, driver {environment["driver"]}'
                if 'capability' in environment else ''),
             f'torch {environment.get("torch")}, CUDA {environment.get("cuda")}, cuDNN {environment.get("cudnn")}, '
             f'Python {environment.get("python")}, commit {environment.get("commit")}',
             f'packages: {environment.get("packages")}', f'mmdet Swin: {environment.get("mmdet_swin")}', '', 'parts:']
    for name, part in report['parts'].items():
        lines.append(f'  {name}: {part["status"]} in {part["seconds"]:.0f} s (limit {part["limit_s"]} s)')
    if 'tests' in report['parts']:
        lines += ['', 'tests (tests/test_device.py):'] + tests_section(report['out'])
    for name in ('swin', 'crossformer'):
        result = report['parts'].get(f'benchmark-{name}', {}).get('result')
        if result:
            lines += ['', f'benchmark {name}:'] + benchmark_section(name, result, report['device'].split(':')[0])
    deployed = report['parts'].get('deploy', {}).get('result')
    if deployed:
        lines += ['', 'deploy (onnxruntime on the GPU against PyTorch):'] + deploy_section(deployed)
    lines += ['', f'result: {"OK" if report["ok"] else "FAILED"}']
    return '\n'.join(lines) + '\n'


def write_report(report):
    with open(os.path.join(report['out'], 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(report['out'], 'report.txt'), 'w') as f:
        f.write(render(report))


def tests_passed(out) -> bool:
    path = os.path.join(out, 'tests.jsonl')
    if not os.path.exists(path):
        return False
    with open(path) as f:
        outcomes = [json.loads(line)['outcome'] for line in f]
    return bool(outcomes) and all(outcome in ('passed', 'xfailed') for outcome in outcomes)


def run_check(args):
    os.makedirs(args.out, exist_ok=True)
    for name in ('tests.jsonl', 'log.txt'):
        if os.path.exists(os.path.join(args.out, name)):
            os.remove(os.path.join(args.out, name))
    report = dict(command=' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]), device=args.device,
                  quick=args.quick, out=args.out, started=datetime.datetime.now().isoformat(timespec='seconds'),
                  parts={}, ok=False)
    work = tempfile.mkdtemp(prefix='gpu_check-')
    common = ['--out', args.out, '--device', args.device, '--runs', str(args.runs), '--warmup', str(args.warmup)]
    common += ['--quick'] * args.quick + ['--mmdet-swin-from-source'] * args.mmdet_swin_from_source
    environment = dict(os.environ)
    if args.device == 'cpu':  # one thread: on a shared machine, other processes slow two threads down far more
        environment.setdefault('OMP_NUM_THREADS', '1')
    for name in args.parts:
        result_path = os.path.join(work, f'{name}.json')
        command = [sys.executable, os.path.abspath(__file__), '--part', name, '--result', result_path] + common
        print(f'[gpu_check] {name} (limit {PART_LIMITS[name]} s) ...', flush=True)
        start = time.perf_counter()
        with open(os.path.join(args.out, 'log.txt'), 'a') as log:
            log.write(f'===== {name}: {" ".join(command)}\n')
            log.flush()
            try:
                process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=environment,
                                         timeout=PART_LIMITS[name])
                status = 'ok' if process.returncode == 0 else 'failed'
            except subprocess.TimeoutExpired:
                status = 'timed out'
        result = None
        if os.path.exists(result_path):
            with open(result_path) as f:
                result = json.load(f)
        report['parts'][name] = dict(status=status, seconds=round(time.perf_counter() - start, 1),
                                     limit_s=PART_LIMITS[name], result=result)
        print(f'[gpu_check] {name}: {status} in {report["parts"][name]["seconds"]:.0f} s', flush=True)
        report['ok'] = (all(part['status'] == 'ok' for part in report['parts'].values())
                        and ('tests' not in report['parts'] or tests_passed(args.out)))
        write_report(report)
    shutil.rmtree(work)
    print(render(report), end='')
    return 0 if report['ok'] else 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='folder for report.txt, report.json, tests.jsonl, log.txt')
    parser.add_argument('--device', default='cuda',
                        help='cuda (default), cuda:N or cpu (with one thread unless OMP_NUM_THREADS says otherwise)')
    parser.add_argument('--quick', action='store_true', help=f'benchmark at {QUICK_SIZE}, one warm-up and one run')
    parser.add_argument('--parts', nargs='+', default=list(PARTS), choices=list(PARTS))
    parser.add_argument('--runs', type=int, help='timed steps of each model in the benchmark (default 5, quick 1)')
    parser.add_argument('--warmup', type=int, help='warm-up steps of each model (default 2, quick 1)')
    parser.add_argument('--mmdet-swin-from-source', action='store_true',
                        help="load mmdet's swin.py from its source file even where mmdet's package imports work "
                             '(what happens on a machine with mmcv-lite)')
    parser.add_argument('--part', choices=list(PARTS), help=argparse.SUPPRESS)  # inside a part's process
    parser.add_argument('--result', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out = os.path.abspath(args.out)
    args.runs = args.runs or (1 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.part:
        return run_part(args)
    import torch
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit(f'--device {args.device}: torch {torch.__version__} sees no CUDA device (use --device cpu)')
    return run_check(args)


if __name__ == '__main__':
    sys.exit(main())
