"""Refresh what is generated from the OpenMMLab model index (configs/*/metafile.yml, model-index.yml): the numbers
this package counts (every model's Parameters and FLOPs, from swin_backbones.count_flops of its config at its Input
Size (HxW)), then the tables generated from the index and the registered backbones (README.md's backbone table,
docs/model_zoo/).

    python tools/model_index.py                  # count every model (about 10 minutes on one CPU core), then tables
    python tools/model_index.py NAME [NAME ...]  # count only these models, then tables
    python tools/model_index.py --write-tables   # the tables only (seconds): after editing a metafile by hand
    python tools/model_index.py --check-tables   # exit status 1 if a generated file is not what the index gives

From Python: swin_backbones.model_index.update_counts and swin_backbones.model_zoo.write_tables.
tests/test_docs.py checks that the generated files are up to date; tests/test_configs.py and the slow
tests/test_model_index.py check the metafiles' counts against the configs.
"""
import argparse
import os.path as osp
import sys

from swin_backbones.model_index import update_counts
from swin_backbones.model_zoo import stale_files, write_tables

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('names', nargs='*', metavar='NAME', help='models to count (default: all)')
    tables = parser.add_mutually_exclusive_group()
    tables.add_argument('--write-tables', action='store_true', help='only regenerate the tables, count nothing')
    tables.add_argument('--check-tables', action='store_true', help='only check that the tables are up to date')
    args = parser.parse_args(argv)
    if args.names and (args.write_tables or args.check_tables):
        parser.error('NAME counts models; --write-tables and --check-tables count nothing')
    try:
        if args.check_tables:
            stale = stale_files(ROOT)
            for path in stale:
                print(f'not up to date: {osp.relpath(path, ROOT)}', file=sys.stderr)
            if stale:
                print('run: python tools/model_index.py --write-tables', file=sys.stderr)
            return 1 if stale else 0
        if not args.write_tables:
            update_counts(path=osp.join(ROOT, 'model-index.yml'), names=args.names or None)
        for path in write_tables(ROOT):
            print(f'updated {osp.relpath(path, ROOT)}')
    except ValueError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
