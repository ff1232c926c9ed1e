"""Adding a backbone is adding its model file: a small backbone of another kind, written to a temporary module and
registered by importing it, is listed and built by the API, exported to ONNX, and picked up by the tests every
backbone must pass (fast against plain, bad input and bad arguments) — nothing else in the package or the tests
names it."""
import os
import subprocess
import sys
import textwrap

from .helpers import REPO

MODEL_FILE = textwrap.dedent('''
    """ToyPyramid: a patch embedding, then stages of attention inside 4 x 4 groups and an MLP, merged by
    strided convolutions: a model file of this package's form, outside the package."""
    from typing import Dict, Optional, Tuple

    import torch
    import torch.nn as nn

    from swin_backbones.models import ops
    from swin_backbones.models.base import PyramidBackbone, StageSpec, resolve_arch
    from swin_backbones.models.grouping import Grouping, group_tokens, pad_image_to_multiple, pad_to_size, round_up
    from swin_backbones.models.grouping import ungroup_tokens
    from swin_backbones.models.layers import CheckpointedBlock, DropPath, Mlp, MultiHeadGroupAttention, build_norm
    from swin_backbones.registry import MODELS

    GROUP = Grouping(4, 4)


    class GroupBlock(CheckpointedBlock):
        def __init__(self, dim, num_heads, drop_path, norm_cfg, fast_path):
            super().__init__()
            self.fast_path = fast_path
            self.norm1 = build_norm(norm_cfg, dim)
            self.attn = MultiHeadGroupAttention(dim, num_heads, fast_path=fast_path)
            self.bias = nn.Parameter(torch.zeros(num_heads, GROUP.group_len, GROUP.group_len))
            self.drop_path = DropPath(drop_path)
            self.norm2 = build_norm(norm_cfg, dim)
            self.mlp = Mlp(dim, 2 * dim, fast_path=fast_path)

        def _forward(self, x, layout):
            _, height, width, _ = x.shape
            padded = pad_to_size(self.norm1(x), round_up(height, 4), round_up(width, 4))
            heads = self.attn.attend_groups(group_tokens(padded, GROUP), self.bias, None)
            heads = ungroup_tokens(heads, GROUP, padded.shape[1], padded.shape[2])[:, :height, :width]
            x = self.attn.project(heads, residual=x, drop_path=self.drop_path)
            return self.mlp(self.norm2(x), residual=x, drop_path=self.drop_path)


    class Stage(nn.Module):
        def __init__(self, spec: StageSpec, norm_cfg, fast_path):
            super().__init__()
            self.fast_path = fast_path
            self.blocks = nn.ModuleList([GroupBlock(spec.dim, spec.num_heads, spec.drop_path[j], norm_cfg, fast_path)
                                         for j in range(spec.depth)])
            self.downsample = nn.Conv2d(spec.dim, 2 * spec.dim, 2, stride=2) if spec.merge_stride else None

        def forward(self, x):
            for block in self.blocks:
                x = block(x, None)
            if self.downsample is None:
                return x, None
            merged = pad_to_size(x, round_up(x.shape[1], 2), round_up(x.shape[2], 2)).permute(0, 3, 1, 2)
            return x, ops.conv2d(merged, self.downsample, self.fast_path).permute(0, 2, 3, 1)


    class PatchEmbed(nn.Module):
        def __init__(self, in_channels, dim, fast_path):
            super().__init__()
            self.fast_path = fast_path
            self.toy_proj = nn.Conv2d(in_channels, dim, 4, stride=4)

        def forward(self, x):
            return ops.conv2d(pad_image_to_multiple(x, 4), self.toy_proj, self.fast_path).permute(0, 2, 3, 1)


    @MODELS.register_module()
    class ToyPyramid(PyramidBackbone):
        """A toy backbone.

        Args:
            arch (str, optional): 'tiny'. Defaults to None.
            embed_dims (int, optional): Channels of the first stage.
            depths (Sequence[int], optional): Blocks per stage.
            num_heads (Sequence[int], optional): Heads per stage.
            drop_path_rate (float): Stochastic depth rate of the last block. Defaults to 0.1.
            norm_cfg (dict): The norms. Defaults to ``dict(type='LN')``.
        """
        presets = {'toy-pyramid-t': 'tiny'}

        def __init__(self, arch=None, embed_dims=None, depths=None, num_heads=None, drop_path_rate=0.1,
                     norm_cfg=dict(type='LN'), **common):
            settings = resolve_arch('ToyPyramid', {'tiny': dict(embed_dims=16, depths=(1, 1, 2, 1),
                                                                num_heads=(1, 2, 2, 4))},
                                    arch, 'tiny', embed_dims=embed_dims, depths=depths, num_heads=num_heads)
            super().__init__(arch=arch, **settings, **common)
            self.patch_embed = PatchEmbed(self.in_channels, self.embed_dims, self.fast_path)
            self._build_stages(lambda spec: Stage(spec, norm_cfg, self.fast_path), 0.0, drop_path_rate, norm_cfg)

        @classmethod
        def recognizes(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
            return 'patch_embed.toy_proj.weight' in state_dict

        @classmethod
        def convert_state_dict(cls, state_dict) -> Tuple[Dict[str, torch.Tensor], str]:
            return dict(state_dict), 'swin_backbones'
''')

API_CHECKS = textwrap.dedent('''
    import os, sys, tempfile
    import torch
    import toy_pyramid
    from swin_backbones import check_onnx, create_backbone, export_onnx, list_backbones
    from swin_backbones.convert import identify_backbone

    assert list_backbones()[-1] == 'toy-pyramid-t', list_backbones()
    model = create_backbone('toy-pyramid-t')
    assert type(model) is toy_pyramid.ToyPyramid and model.out_strides == [4, 8, 16, 32]
    assert [tuple(o.shape) for o in model(torch.randn(1, 3, 37, 50))] == [
        (1, 16, 10, 13), (1, 32, 5, 7), (1, 64, 3, 4), (1, 128, 2, 2)]
    assert identify_backbone(model.state_dict()) is toy_pyramid.ToyPyramid
    assert 'in_channels (int)' in toy_pyramid.ToyPyramid.__doc__  # the common arguments are documented
    path = os.path.join(tempfile.mkdtemp(), 'toy.onnx')
    export_onnx(model, path)
    worst = max(max(diffs) for _, diffs in check_onnx(path, model, [(61, 77), (96, 130)]))
    assert worst < 1e-5, worst
    print('api checks passed')
''')


def test_a_new_model_file_is_picked_up_by_the_api_the_export_and_the_shared_tests(tmp_path):
    (tmp_path / 'toy_pyramid.py').write_text(MODEL_FILE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]), PYTHONWARNINGS='ignore')
    api = subprocess.run([sys.executable, '-c', API_CHECKS], capture_output=True, text=True, env=env, cwd=REPO)
    assert api.returncode == 0 and 'api checks passed' in api.stdout, api.stdout + api.stderr

    # The shared tests, with the module loaded as a pytest plugin: it registers before the tests collect.
    shared = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'toy_pyramid', '-p', 'no:cacheprovider',
                             'tests/test_fast_paths.py', 'tests/test_bad_input.py', 'tests/test_kernel_rules.py',
                             '-k', 'ToyPyramid', '-m', 'not slow'],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert shared.returncode == 0, shared.stdout[-3000:] + shared.stderr[-3000:]
    passed = int(shared.stdout.strip().splitlines()[-1].split(' passed')[0].split()[-1])
    # Every shared test over the registered backbones, for the new one: fast vs plain at each size and kernel
    # set, with_cp, the bad inputs and arguments, the fast path's arguments.
    assert passed >= 40, shared.stdout[-2000:]
