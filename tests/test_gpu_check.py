"""tools/gpu_check.sh and tools/gpu_check.py: the report of a part that overruns its limit, the per-test record,
and (slow) the whole check in quick mode on the CPU, with mmdet's Swin loaded from its source file as on a
machine without mmcv's compiled ops."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from .helpers import REPO, TOOLS


def load_gpu_check():
    spec = importlib.util.spec_from_file_location('gpu_check', os.path.join(TOOLS, 'gpu_check.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_report(out):
    with open(out / 'report.json') as f:
        report = json.load(f)
    with open(out / 'report.txt') as f:
        return report, f.read()


def test_a_part_over_its_limit_is_stopped_and_reported(tmp_path, monkeypatch):
    """One second is far too little for the tests part (it imports torch and runs dozens of tests)."""
    gpu_check = load_gpu_check()
    monkeypatch.setitem(gpu_check.PART_LIMITS, 'tests', 1)
    assert gpu_check.main(['--device', 'cpu', '--out', str(tmp_path), '--parts', 'tests']) == 1
    report, text = read_report(tmp_path)
    assert report['parts']['tests']['status'] == 'timed out' and not report['ok']
    assert 'tests: timed out in' in text and text.endswith('result: FAILED\n')


def test_each_test_is_recorded_as_it_ends(tmp_path):
    """TestRecorder in a pytest run of its own: outcomes, recorded numbers and failure messages in tests.jsonl,
    summarised per test function in the report."""
    (tmp_path / 'test_sample.py').write_text(
        'import pytest\n'
        'def test_passes(record_property):\n    record_property("difference", 2e-6)\n'
        '@pytest.mark.parametrize("x", [1, 2])\n'
        'def test_fails_once(x, record_property):\n    record_property("difference", x * 0.5)\n'
        '    assert x == 1, "x is not 1"\n'
        '@pytest.mark.xfail(strict=True)\ndef test_expected_failure():\n    assert False\n')
    out = tmp_path / 'out'
    out.mkdir()
    script = ('import sys, pytest; sys.path.insert(0, sys.argv[1]); import gpu_check; '
              'pytest.main([sys.argv[2], "-q", "-p", "no:cacheprovider"], '
              'plugins=[gpu_check.TestRecorder(sys.argv[3])])')
    subprocess.run([sys.executable, '-c', script, TOOLS, str(tmp_path / 'test_sample.py'), str(out / 'tests.jsonl')],
                   cwd=tmp_path, check=True, capture_output=True)
    with open(out / 'tests.jsonl') as f:
        entries = {entry['test']: entry for entry in map(json.loads, f)}
    assert {test: entry['outcome'] for test, entry in entries.items()} == {
        'test_passes': 'passed', 'test_fails_once[1]': 'passed', 'test_fails_once[2]': 'failed',
        'test_expected_failure': 'xfailed'}
    assert entries['test_passes']['measured'] == {'difference': 2e-6}
    assert 'x is not 1' in entries['test_fails_once[2]']['message']
    lines = load_gpu_check().tests_section(str(out))
    assert lines[0] == '  1 failed, 2 passed, 1 xfailed'
    assert '  test_fails_once: 1 failed, 1 passed' in lines and '    difference 1' in lines
    assert any(line.startswith('  FAILED test_fails_once[2]: AssertionError: x is not 1') for line in lines)


@pytest.mark.parametrize('device', ['cpu', 'cuda'])
def test_the_deploy_part_says_why_it_skips_without_a_gpu_provider(device, monkeypatch):
    """Here (no onnxruntime-gpu, no GPU) the optional deploy part records why it skips instead of failing."""
    import argparse
    gpu_check = load_gpu_check()
    monkeypatch.setitem(os.environ, 'NVIDIA_TF32_OVERRIDE', '0')
    records = []
    gpu_check.part_deploy(argparse.Namespace(device=device), records.append)
    assert len(records) == 1 and set(records[0]) == {'skipped'}
    assert ('--device cpu' if device == 'cpu' else 'onnxruntime-gpu') in records[0]['skipped']
    assert gpu_check.deploy_section(records[0]) == [f'  skipped: {records[0]["skipped"]}']


@pytest.mark.slow
def test_quick_check_on_the_cpu(tmp_path):
    """The whole check as a lent GPU session runs it, on the CPU in quick mode (well under 3 minutes on 2
    cores), with mmdet's Swin loaded from its source file; the deploy part skips on the CPU."""
    process = subprocess.run(['bash', os.path.join(TOOLS, 'gpu_check.sh'), '--device', 'cpu', '--quick',
                              '--out', str(tmp_path), '--mmdet-swin-from-source'],
                             cwd=REPO, env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True,
                             timeout=600)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    report, text = read_report(tmp_path)
    assert text.endswith('result: OK\n') and text in process.stdout
    parts = report['parts']
    assert list(parts) == ['environment', 'tests', 'benchmark-swin', 'benchmark-crossformer', 'deploy']
    assert all(part['status'] == 'ok' for part in parts.values())
    assert 'skipped: --device cpu' in text
    assert 'loaded from its source file' in parts['environment']['result']['mmdet_swin']
    outcomes = parts['tests']['result']['outcomes']
    assert outcomes.get('passed', 0) >= 50 and set(outcomes) <= {'passed', 'xfailed'}
    for name in ('swin', 'crossformer'):
        result = parts[f'benchmark-{name}']['result']
        assert [row['mode'] for row in result['rows']] == ['forward', 'train']
        assert all(set(row['seconds']) == {'ours', 'ours save_memory', 'ours plain', 'reference'}
                   and all(seconds > 0 for seconds in row['seconds'].values()) for row in result['rows'])
        assert max(result['fp32_max_abs_diff'].values()) <= result['fp32_tolerance']
