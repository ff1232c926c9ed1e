"""Refresh the numbers this package counts in the OpenMMLab model index (configs/*/metafile.yml): every model's
Parameters and FLOPs, from swin_backbones.count_flops of its config at its Input Size (HxW).

    python tools/model_index.py                  # every model (about 10 minutes on one CPU core)
    python tools/model_index.py NAME [NAME ...]  # only these models

From Python: swin_backbones.model_index.update_counts. The README's Configs tables show the same numbers
(tests/test_model_index.py checks that they agree).
"""
import argparse
import sys

from swin_backbones.model_index import update_counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('names', nargs='*', metavar='NAME', help='models to count (default: all)')
    args = parser.parse_args(argv)
    try:
        update_counts(names=args.names or None)
    except ValueError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
