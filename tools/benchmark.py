"""Speed and memory of the backbones against mmdet's Swin and the authors' CrossFormer: the command line of
:mod:`swin_backbones.benchmark` (``--help`` lists the options).

    python tools/benchmark.py --model swin --grid
    python tools/benchmark.py --model crossformer --grid --crossformer-reference PATH/TO/crossformer_backbone.py
"""
from swin_backbones.benchmark import main

if __name__ == '__main__':
    main()
