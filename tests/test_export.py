"""ONNX export (swin_backbones.export, tools/export_onnx.py) and torch.compile with dynamic shapes.

Every exported model is traced at one size and run in onnxruntime at others, batch sizes included,
against the PyTorch backbone: 256 x 320 pads only in the attention layouts, 289 x 353 pads the image and
every level, and their paper-LDA group grids differ (8 x 10 against 10 x 12 at stage 0), so a size
frozen into the graph would show.
"""
import os

import pytest
import torch

pytest.importorskip('onnx', reason='the ONNX export tests need onnx (in the test extras: pip install -e .[test])')
pytest.importorskip('onnxruntime', reason='the ONNX export tests need onnxruntime (in the test extras)')

from swin_backbones.models.crossformer import CrossFormer  # noqa: E402
from swin_backbones.models.swin import SwinTransformer  # noqa: E402
from swin_backbones.models.swinv2 import SwinTransformerV2  # noqa: E402

from .helpers import assert_close, randomize_, randomize_swinv2_  # noqa: E402
from swin_backbones import export as export_onnx  # noqa: E402
from swin_backbones.cli import export_onnx as export_cli  # noqa: E402

from .helpers import TOY_CONFIGS  # noqa: E402

# onnxruntime's kernels round differently from PyTorch's: measured <= 2.4e-6 of the output magnitude.
ONNX_REL = 2e-5
TRACE_SIZE = (300, 262)
SIZES = [(2, 256, 320), (1, 289, 353)]  # (batch, height, width)

TINY = {
    'swin': lambda: SwinTransformer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
    'swin-abs-pos': lambda: SwinTransformer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                                            use_abs_pos_embed=True, out_indices=(1, 3)),
    'swinv2': lambda: SwinTransformerV2(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                                        window_size=(8, 8, 12, 4), pretrained_window_sizes=(0, 6, 8, 0)),
    'crossformer': lambda: CrossFormer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
    'crossformer-pp-adaptive': lambda: CrossFormer(embed_dims=32, depths=(4, 2, 2, 2), num_heads=(1, 2, 4, 8),
                                                   lda_type='pp', use_acl=True, adaptive_interval=True),
}
# Sizes only some backbones take: Swin any size; CrossFormer exactly its minimum, and taller than wide
# (CrossFormer++'s adaptive interval follows the longer side).
EXTRA_SIZES = {'swin': [(3, 33, 47), (1, 1, 1)], 'swin-abs-pos': [(1, 224, 224)], 'swinv2': [(3, 33, 47), (1, 1, 1)],
               'crossformer': [(3, 225, 225)], 'crossformer-pp-adaptive': [(1, 385, 257)]}


def randomized(model):
    return (randomize_swinv2_ if isinstance(model, SwinTransformerV2) else randomize_)(model)


def tiny_backbone(kind: str):
    torch.manual_seed(0)
    model = TINY[kind]()
    model.init_weights()
    return randomized(model).eval()


def onnx_parity(path, backbone, sizes):
    """onnxruntime against PyTorch relative to the output magnitude, at each (batch, height, width)."""
    return {size: max(export_onnx.check_onnx(path, backbone, [size[1:]], batch=size[0])[0][1]) for size in sizes}


@pytest.mark.parametrize('kind', list(TINY))
def test_onnx_export_matches_pytorch_at_other_sizes(kind, tmp_path):
    backbone = tiny_backbone(kind)
    path = str(tmp_path / 'model.onnx')
    export_onnx.export_onnx(backbone, path, sample_size=TRACE_SIZE)
    diffs = onnx_parity(path, backbone, SIZES + EXTRA_SIZES[kind])
    assert max(diffs.values()) <= ONNX_REL, diffs


# Sizes at which nothing pads (image, windows, groups, merges): a shortcut for "no padding" taken while
# tracing would be frozen into the graph and break every padded size.
UNPADDED_TRACE_SIZE = {'swin': (224, 224), 'swinv2': (384, 384), 'crossformer': (448, 448)}


@pytest.mark.parametrize('kind', list(UNPADDED_TRACE_SIZE))
def test_onnx_export_traced_without_padding_runs_padded_sizes(kind, tmp_path):
    backbone = tiny_backbone(kind)
    path = str(tmp_path / 'model.onnx')
    export_onnx.export_onnx(backbone, path, sample_size=UNPADDED_TRACE_SIZE[kind])
    diffs = onnx_parity(path, backbone, [(1, 289, 353), (2,) + UNPADDED_TRACE_SIZE[kind]])
    assert max(diffs.values()) <= ONNX_REL, diffs


def test_onnx_export_names_dynamic_axes_and_outputs(tmp_path):
    import onnx
    backbone = tiny_backbone('swin-abs-pos')
    path = str(tmp_path / 'model.onnx')
    export_onnx.export_onnx(backbone, path, sample_size=TRACE_SIZE)
    model = onnx.load(path)
    assert {prop.key: prop.value for prop in model.metadata_props}['minimum_input_size'] == '1'
    graph = model.graph
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == \
        ['batch', 3, 'height', 'width']
    assert [output.name for output in graph.output] == ['stride8', 'stride32']
    for output in graph.output:
        dims = output.type.tensor_type.shape.dim
        assert dims[0].dim_param == 'batch' and dims[2].dim_param and dims[3].dim_param


@pytest.mark.parametrize('name', ['swin-t', 'swinv2-t', 'crossformer-s'])
def test_onnx_export_of_the_published_structures(name, tmp_path):
    backbone = randomized(export_onnx.build_backbone(name))
    path = str(tmp_path / f'{name}.onnx')
    export_onnx.export_onnx(backbone, path)  # traced at the default 289 x 353
    diffs = onnx_parity(path, backbone, [(1, 256, 320), (1, 321, 257)])
    assert max(diffs.values()) <= ONNX_REL, diffs


# Two stages (blocks with and without shift / SDA and LDA, one merge): the torch.export-based exporter
# and inductor spend their time on symbolic shape expressions, which grow with the number of stages.
TWO_STAGE = {
    'swin': lambda: SwinTransformer(embed_dims=32, depths=(2, 2), num_heads=(1, 2), strides=(4, 2),
                                    out_indices=(0, 1)),
    'swinv2': lambda: SwinTransformerV2(embed_dims=32, depths=(2, 2), num_heads=(1, 2), window_size=8,
                                        pretrained_window_sizes=(6, 0), out_indices=(0, 1)),
    'crossformer': lambda: CrossFormer(embed_dims=32, depths=(2, 2), num_heads=(1, 2), group_size=7,
                                       crs_interval=(8, 4), out_indices=(0, 1)),
}


def two_stage_backbone(kind: str):
    torch.manual_seed(0)
    model = TWO_STAGE[kind]()
    model.init_weights()
    return randomized(model).eval()


@pytest.mark.slow
@pytest.mark.parametrize('kind', list(TWO_STAGE))
def test_dynamo_onnx_export_matches_pytorch(kind, tmp_path):
    """The torch.export-based exporter (--exporter dynamo)."""
    pytest.importorskip('onnxscript', reason="torch.onnx's dynamo exporter needs onnxscript")
    backbone = two_stage_backbone(kind)
    path = str(tmp_path / 'model.onnx')
    export_onnx.export_onnx(backbone, path, sample_size=TRACE_SIZE, exporter='dynamo')
    diffs = onnx_parity(path, backbone, SIZES)
    assert max(diffs.values()) <= ONNX_REL, diffs


# ------------------------------------------------------------------------------ minimum size, CLI
def test_minimum_input_size():
    assert export_onnx.minimum_input_size(tiny_backbone('swin')) == 1
    assert export_onnx.minimum_input_size(tiny_backbone('crossformer')) == 7 * 32 + 1
    # the largest G * stride over the stages: 12 * 16 at stage 2
    backbone = CrossFormer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), group_size=(7, 7, 12, 5))
    assert export_onnx.minimum_input_size(backbone) == 12 * 16 + 1
    assert export_onnx.default_sample_size(backbone) == (289, 353)
    large = CrossFormer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), group_size=12)
    assert export_onnx.default_sample_size(large) == (385, 449)


def test_crossformer_export_below_the_minimum_size_is_refused(tmp_path):
    backbone = tiny_backbone('crossformer')
    with pytest.raises(export_onnx.ExportError, match='at least 225 x 225'):
        export_onnx.export_onnx(backbone, str(tmp_path / 'model.onnx'), sample_size=(224, 320))
    assert os.listdir(tmp_path) == []


def test_cli_exports_a_config_and_checks_it(tmp_path, capsys):
    output = str(tmp_path / 'out' / 'crossformer.onnx')
    config = TOY_CONFIGS[('seg', 'crossformer')]
    assert export_cli.main([config, output, '--set', 'out_indices=1,3', '--check']) == 0
    printed = capsys.readouterr().out
    assert 'check 289 x 353' in printed and 'check 324 x 380' in printed
    assert 'stride8, stride32' in printed and 'valid for H, W >= 225' in printed
    assert os.listdir(tmp_path / 'out') == ['crossformer.onnx']
    import onnx
    metadata = {prop.key: prop.value for prop in onnx.load(output).metadata_props}
    assert metadata['minimum_input_size'] == '225' and metadata['producer'].startswith('swin_backbones ')
    (tmp_path / 'plain').write_text('')
    assert os.stat(output).st_mode == os.stat(tmp_path / 'plain').st_mode  # not mkstemp's 0600

    mtime = os.stat(output).st_mtime_ns
    assert export_cli.main([config, output]) == 2
    assert 'exists; pass --force' in capsys.readouterr().err
    assert os.stat(output).st_mtime_ns == mtime
    assert export_cli.main([config, output, '--force', '--sample-size', '200x300']) == 2
    assert 'at least 225 x 225' in capsys.readouterr().err
    assert os.stat(output).st_mtime_ns == mtime


def test_cli_writes_nothing_when_the_check_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export_cli, 'check_onnx', lambda path, backbone, sizes: [((64, 64), [0.5] * 4)])
    output = tmp_path / 'swin.onnx'
    assert export_cli.main([TOY_CONFIGS[('seg', 'swin')], str(output), '--check']) == 2
    assert 'exceeds the tolerance' in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_cli_rejects_unknown_backbones_and_configs(tmp_path, capsys):
    assert export_cli.main(['swin-xxl', str(tmp_path / 'a.onnx')]) == 2
    assert 'unknown backbone' in capsys.readouterr().err
    assert export_cli.main([str(tmp_path / 'missing.py'), str(tmp_path / 'a.onnx')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert export_cli.main(['swin-t', str(tmp_path / 'a.onnx'), '--set', 'window_size=-1']) == 2
    assert 'window_size' in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


# -------------------------------------------------------------------------------- torch.compile
# Sizes that pad in every attention layout: whether a layout pads decides whether its cropped output
# is contiguous, which dynamo guards on (one more compilation, the same outputs). At 256 x 320 CrossFormer's
# first LDA (interval 8 on a 64 x 80 map) does not pad, hence 257 x 321.
COMPILE_SIZES = {'swin': [(256, 320), (289, 353)], 'swinv2': [(257, 321), (289, 353)],
                 'crossformer': [(257, 321), (289, 353)]}


# Inductor's CPU code generation with symbolic sizes takes 2-3 minutes per model on 2 busy cores (10 for
# SwinV2): the suite compiles Swin with inductor, and traces SwinV2 and CrossFormer with dynamo and
# AOT autograd ('aot_eager': the same graph capture, guards and recompilation rules, run eagerly).
COMPILE_BACKENDS = {'swin': 'inductor', 'swinv2': 'aot_eager', 'crossformer': 'aot_eager'}


@pytest.mark.slow
@pytest.mark.parametrize('kind', list(TWO_STAGE))
def test_compile_with_dynamic_shapes_matches_eager_without_recompiling(kind):
    """One compilation serves both sizes."""
    model = two_stage_backbone(kind)
    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=True, backend=COMPILE_BACKENDS[kind])
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for index, (height, width) in enumerate(COMPILE_SIZES[kind]):
                image = torch.randn(2, 3, height, width, generator=generator)
                with torch._dynamo.config.patch(error_on_recompile=index > 0):
                    out = compiled(image)
                assert_close(out, model(image))
    finally:
        torch._dynamo.reset()


# Four-stage models of the smallest width and depth that still have a shifted (or long-distance) block in
# the last stage, and a sequence of odd and even sizes, growing and shrinking, with batch 1: at (80, 121)
# torch 2.13's inductor used to fail (InductorError in regroup's index_select, on the last stage's single
# window). Only inductor's code generation hit it, so Swin compiles with inductor; SwinV2 (the same window
# layout) and CrossFormer with aot_eager, which keeps dynamo's capture, guards and recompilations.
COMPILE_SEQUENCE = [(65, 97), (80, 121), (33, 47), (96, 128), (121, 80)]
SMALLEST_FOUR_STAGE = {
    'swin': (lambda: SwinTransformer(embed_dims=8, depths=(1, 1, 1, 2), num_heads=(1, 1, 1, 1)), 'inductor'),
    'swinv2': (lambda: SwinTransformerV2(embed_dims=8, depths=(1, 1, 1, 2), num_heads=(1, 1, 1, 1), window_size=7),
               'aot_eager'),
    'crossformer': (lambda: CrossFormer(embed_dims=16, depths=(1, 1, 1, 2), num_heads=(1, 1, 1, 1)), 'aot_eager'),
}


@pytest.mark.slow
@pytest.mark.parametrize('kind', list(SMALLEST_FOUR_STAGE))
def test_compile_with_dynamic_shapes_serves_a_sequence_of_sizes(kind):
    """Every size of the sequence runs and equals eager mode; some sizes compile again (see the README)."""
    build, backend = SMALLEST_FOUR_STAGE[kind]
    torch.manual_seed(0)
    model = build()
    model.init_weights()
    model = randomized(model).eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=True, backend=backend)
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for height, width in COMPILE_SEQUENCE:
                image = torch.randn(1, 3, height, width, generator=generator)
                assert_close(compiled(image), model(image))
    finally:
        torch._dynamo.reset()
