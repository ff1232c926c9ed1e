"""The OpenMMLab model index (model-index.yml and configs/*/metafile.yml): refresh the counted numbers, print
the README's model zoo table.

    python tools/model_index.py --update                  # count every model, rewrite Parameters and FLOPs
    python tools/model_index.py --update NAME [NAME ...]  # only these models
    python tools/model_index.py --table                   # the README's model zoo table, from the metafiles

From Python: swin_backbones.model_index (update_counts, zoo_table). Counting every model takes minutes on a CPU.
"""
import argparse
import sys

from swin_backbones.model_index import update_counts, zoo_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--update', nargs='*', metavar='NAME',
                        help='count the models (all, or those named) and rewrite their Parameters and FLOPs')
    parser.add_argument('--table', action='store_true', help="print the README's model zoo table")
    args = parser.parse_args(argv)
    if args.update is None and not args.table:
        parser.error('nothing to do: give --update and/or --table')
    if args.update is not None:
        try:
            update_counts(names=args.update or None)
        except ValueError as error:
            print(f'error: {error}', file=sys.stderr)
            return 1
    if args.table:
        print(zoo_table(), end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
