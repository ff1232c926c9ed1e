"""Training demo on generated data, on the CPU, in minutes: Mask R-CNN + Swin and UperNet + CrossFormer.

    bash tools/run.sh demo              # = python tools/demo.py
    python tools/demo.py --quick        # a shortened run (tiny data, a few iterations; what CI runs)

Options: python tools/demo.py --help (the demo itself: swin_backbones/cli/demo.py).
"""
import os
import sys

# torch's OpenMP threads busy-wait between parallel regions by default. With 2 cores shared with any
# other busy program, that makes the many small operations of these slim models many times slower
# (UperNet iterations went from 0.2 s to 4-7 s beside other jobs on the 2-core test machine). Threads
# that sleep while they wait cost about 35% on an idle machine and keep the demo within minutes when
# the machine is busy (measured: 0.47 / 0.56 s per Mask R-CNN iteration idle / beside a busy program,
# against 0.35 / 0.87 with a short spin and far worse with the default). Set OMP_WAIT_POLICY=ACTIVE
# for the last bit of speed on an idle machine. Must precede importing torch (and so swin_backbones).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from swin_backbones.cli.demo import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
