"""What mmdet 3.3's and mmseg 1.2's Swin unit tests and mmpretrain 1.2's Swin V2 unit tests expect of their
backbones, checked on this package's, written from those facts (their test files are not imported): the errors
their bad arguments raise (AssertionError, or TypeError), output shapes at even and odd sizes, the absolute
position embedding, patch_norm=False, frozen stages, activation checkpointing, mmpretrain's archs, windows,
pad_small_map, stochastic depth schedule and checkpoint loading at another img_size."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.runner import load_checkpoint, save_checkpoint

from swin_backbones import SwinTransformer, SwinTransformerV2


def shapes(outs):
    return [tuple(out.shape) for out in outs]


# ------------------------------------------------------------------------------- mmdet's and mmseg's Swin
def test_swin_refuses_what_mmdet_and_mmseg_refuse_with_their_exceptions():
    with pytest.raises(TypeError):
        SwinTransformer(pretrained=123)
    with pytest.raises(AssertionError):  # a patch embedding that does not overlap: its stride is the patch size
        SwinTransformer(strides=(2, 2, 2, 2), patch_size=4)
    with pytest.raises(AssertionError):
        SwinTransformer(pretrain_img_size=(224, 224, 224))
    SwinTransformer(pretrain_img_size=(224,))


def test_swin_absolute_position_embedding_and_patch_norm_run():
    image = torch.randn(1, 3, 224, 224)
    model = SwinTransformer(pretrain_img_size=224, use_abs_pos_embed=True)
    model.init_weights()
    assert shapes(model(image))[3] == (1, 768, 7, 7)
    assert shapes(SwinTransformer(patch_norm=False)(image))[0] == (1, 96, 56, 56)


@pytest.mark.parametrize('size, expected', [
    ((512, 512), [(1, 96, 128, 128), (1, 192, 64, 64), (1, 384, 32, 32), (1, 768, 16, 16)]),
    ((511, 511), [(1, 96, 128, 128), (1, 192, 64, 64), (1, 384, 32, 32), (1, 768, 16, 16)]),
    ((112, 137), [(1, 96, 28, 35), (1, 192, 14, 18), (1, 384, 7, 9), (1, 768, 4, 5)]),
])
def test_swin_default_outputs_at_even_and_odd_sizes(size, expected):
    with torch.no_grad():
        assert shapes(SwinTransformer().eval()(torch.randn(1, 3, *size))) == expected


def test_swin_frozen_stages_4_freezes_every_parameter():
    model = SwinTransformer(frozen_stages=4)
    model.train()
    assert not any(param.requires_grad for param in model.parameters())


def test_swin_blocks_take_with_cp():
    model = SwinTransformer(with_cp=True)
    blocks = [block for stage in model.stages for block in stage.blocks]
    assert blocks and all(block.with_cp for block in blocks)
    model.train()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    sum(out.sum() for out in model(x)).backward()
    assert x.grad is not None


# ---------------------------------------------------------------------------------- mmpretrain's Swin V2
BASE = dict(arch='b', img_size=256, patch_size=4, drop_path_rate=0.1)


def test_swinv2_arch_errors_are_assertion_errors():
    with pytest.raises(AssertionError, match='arch'):
        SwinTransformerV2(**dict(BASE, arch='unknown'))
    with pytest.raises(AssertionError, match='dict arch needs exactly the keys'):
        SwinTransformerV2(**dict(BASE, arch=dict(embed_dims=96, num_heads=[3, 6, 12, 16])))


def test_swinv2_custom_arch_builds_its_stages():
    # mmpretrain's test builds embed_dims 256 with 6 heads, which cannot run (256 is not divisible by 6, its
    # attention's reshape fails at the first forward): here that is refused at the constructor.
    with pytest.raises(AssertionError, match='not divisible by its num_heads 6'):
        SwinTransformerV2(**dict(BASE, arch=dict(embed_dims=256, depths=[2, 2, 6, 2], num_heads=[6, 12, 6, 12],
                                                  extra_norm_every_n_blocks=0)))
    depths, num_heads = [2, 2, 6, 2], [4, 8, 8, 16]
    with torch.device('meta'):
        model = SwinTransformerV2(**dict(BASE, arch=dict(embed_dims=256, depths=depths, num_heads=num_heads,
                                                          extra_norm_every_n_blocks=0)))
    for i, stage in enumerate(model.stages):
        assert model.num_features[i] == 256 * 2 ** i and len(stage.blocks) == depths[i]
        assert stage.blocks[0].attn.num_heads == num_heads[i]


def test_swinv2_outputs_windows_and_pad_small_map():
    """mmpretrain checks these with arch 'b'; the tiny arch has the same structure at 96 channels, in a fraction of the
    time."""
    tiny = dict(BASE, arch='t')
    with torch.no_grad():
        model = SwinTransformerV2(**tiny, out_indices=(3,)).eval()
        outs = model(torch.randn(1, 3, 256, 256))
        assert isinstance(outs, tuple) and shapes(outs) == [(1, 768, 8, 8)]
        window12 = SwinTransformerV2(**tiny, window_size=12, out_indices=(3,), pad_small_map=False).eval()
        assert shapes(window12(torch.randn(1, 3, 384, 384))) == [(1, 768, 12, 12)]
        with pytest.raises(AssertionError, match=r'the window size \(12\)'):
            window12(torch.randn(1, 3, 256, 256))
        padded = SwinTransformerV2(**tiny, window_size=12, out_indices=(3,), pad_small_map=True).eval()
        assert shapes(padded(torch.randn(1, 3, 256, 256))) == [(1, 768, 8, 8)]
        every = SwinTransformerV2(**tiny, out_indices=(0, 1, 2, 3)).eval()
        assert shapes(every(torch.randn(1, 3, 256, 256))) == [(1, 96 * s, 64 // s, 64 // s) for s in (1, 2, 4, 8)]
        for size in [(224, 224), (256, 256), (256, 309)]:
            assert shapes(model(torch.randn(1, 3, *size))) == [(1, 768, math.ceil(size[0] / 32),
                                                                 math.ceil(size[1] / 32))]


def test_swinv2_with_cp_trains():
    model = SwinTransformerV2(arch='t', with_cp=True)
    assert all(block.with_cp for stage in model.stages for block in stage.blocks)
    model.init_weights()
    model.train()
    assert shapes(model(torch.randn(1, 3, 128, 128))) == [(1, 96 * 2 ** i, 32 // 2 ** i, 32 // 2 ** i)
                                                          for i in range(4)]


def test_swinv2_drop_path_rises_linearly_over_the_blocks():
    with torch.device('meta'):
        model = SwinTransformerV2(**dict(BASE, drop_path_rate=0.2))
    blocks = [block for stage in model.stages for block in stage.blocks]
    for i, block in enumerate(blocks):
        assert block.drop_path.drop_prob == pytest.approx(0.2 / (len(blocks) - 1) * i)


def test_swinv2_frozen_stages_0_freezes_the_stem_the_first_stage_and_its_norm():
    model = SwinTransformerV2(arch='t', frozen_stages=0, out_indices=(0, 1, 2, 3))
    model.init_weights()
    model.train()
    assert not model.patch_embed.training
    assert not any(p.requires_grad for p in [*model.patch_embed.parameters(), *model.stages[0].blocks.parameters(),
                                             *model.norm0.parameters()])
    for i in range(1, 4):
        assert all(p.requires_grad for p in [*model.stages[i].parameters(), *getattr(model, f'norm{i}').parameters()])


def test_swinv2_absolute_position_embedding_initialised_saved_and_resized(tmp_path):
    model = SwinTransformerV2(arch='t', img_size=256, use_abs_pos_embed=True,
                              init_cfg=[dict(type='Kaiming', layer='Conv2d', mode='fan_in', nonlinearity='linear')])
    weight = model.patch_embed.proj.weight.clone()
    assert not model.absolute_pos_embed.any()  # zero until initialised
    model.init_weights()
    assert not torch.equal(weight, model.patch_embed.proj.weight) and model.absolute_pos_embed.any()
    pretrained = model.absolute_pos_embed.detach().clone()
    save_checkpoint(model.state_dict(), str(tmp_path / 'checkpoint.pth'))
    larger = SwinTransformerV2(arch='t', img_size=384, use_abs_pos_embed=True)
    load_checkpoint(larger, str(tmp_path / 'checkpoint.pth'), strict=False)
    grid = pretrained.reshape(1, 64, 64, 96).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(96, 96), mode='bicubic', align_corners=False).flatten(2).transpose(1, 2)
    assert torch.allclose(larger.absolute_pos_embed, expected, atol=1e-6)
