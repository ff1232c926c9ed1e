"""This checkout's speed against another checkout's (say, the commit before a change), in one run.

    git worktree add /tmp/before HEAD~1
    python -m benchmarks.compare_checkouts /tmp/before --model swin-t crossformer-s --repeats 3

Runs ``python -m benchmarks.benchmark --grid`` of each model in fresh processes, the two checkouts taking turns
(each process imports its own checkout's package: ``PYTHONPATH`` is the checkout), ``--repeats`` times each, and
prints per grid row the fastest time of ours in each checkout, their ratio (before / after: above 1, the change
made it faster), and the range of each checkout's ratio to the benchmark's reference (mmdet's Swin, the
authors'-style CrossFormer) over its processes: the reference runs in every process, so that ratio is what
compares across processes whatever else the machine does.
"""
import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(r'^\s*(\d+x\d+)\s+(\d+)\s+(\w+) \|\s+([\d.]+)\s+([\d.]+)\s+([\d.]+) \|')


def run_benchmark(checkout: str, model: str, extra) -> dict:
    """{(size, batch, mode): (ours s, reference s, reference / ours)} of one benchmark process."""
    env = dict(os.environ, PYTHONPATH=checkout)
    command = [sys.executable, '-m', 'benchmarks.benchmark', '--model', model, '--grid', *extra]
    output = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match:
            size, batch, mode, ours, reference, ratio = match.groups()
            rows[size, int(batch), mode] = (float(ours), float(reference), float(ratio))
    if not rows:
        raise RuntimeError(f'no results in the output of {" ".join(command)} in {checkout}:\n{output}')
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.compare_checkouts', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('before', help='the other checkout (a git worktree of the commit to compare with)')
    parser.add_argument('--model', nargs='+', default=['swin-t', 'crossformer-s'])
    parser.add_argument('--repeats', type=int, default=2, help='fresh processes per checkout and model')
    parser.add_argument('--runs', type=int, default=3, help="the benchmark's --runs")
    args = parser.parse_args(argv)
    checkouts = {'before': os.path.abspath(args.before), 'after': HERE}
    for model in args.model:
        results = defaultdict(lambda: defaultdict(list))  # row -> checkout -> [(ours, ratio)]
        for _ in range(args.repeats):
            for name, checkout in checkouts.items():
                for row, (ours, _, ratio) in run_benchmark(checkout, model, ['--runs', str(args.runs)]).items():
                    results[row][name].append((ours, ratio))
        print(f'{model}: fastest time of ours over {args.repeats} processes per checkout, and the range of its ratio '
              f'to the reference')
        print(f'{"size":>10} {"batch":>5} {"mode":>8} | {"before s":>8} {"after s":>8} {"before/after":>12} | '
              f'{"ratio before":>13} {"ratio after":>13}')
        for (size, batch, mode), by_checkout in results.items():
            best = {name: min(ours for ours, _ in values) for name, values in by_checkout.items()}
            spans = {name: f'{min(r for _, r in values):.2f}-{max(r for _, r in values):.2f}'
                     for name, values in by_checkout.items()}
            print(f'{size:>10} {batch:>5} {mode:>8} | {best["before"]:8.3f} {best["after"]:8.3f} '
                  f'{best["before"] / best["after"]:12.2f} | {spans["before"]:>13} {spans["after"]:>13}', flush=True)


if __name__ == '__main__':
    main()
