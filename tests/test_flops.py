"""swin_backbones.count_flops and swin-backbones-flops: the counting rules on small models counted by hand, and
the dummy forwards of detectors and segmentors. The configs' counts against the published FLOPs are checked
with the model index (tests/test_model_index.py)."""
import pytest
import torch.nn as nn

from swin_backbones import CrossFormer, SwinTransformer, SwinTransformerV2, count_flops
from swin_backbones.cli.flops import main as flops_main


def test_swin_count_by_hand():
    # 8 x 8 image: 2 x 2 tokens of 8 channels in stage 0 (one 2 x 2 window), 1 token of 16 in stage 1 (padded
    # to a 2 x 2 window: qkv and the products see 4 tokens, the rest of the block the 1 real token).
    model = SwinTransformer(embed_dims=8, depths=(2, 2), num_heads=(1, 2), window_size=2, strides=(4, 2),
                            out_indices=(0, 1), impl='plain')
    patch_embed = 4 * (16 * 3 * 8) + 4 * 8 + 4 * 8 * 2  # conv: positions x k*k*in*out + bias; LayerNorm x 2
    stage0_block = (4 * 8 * 2  # norm1
                    + 4 * 8 * 24  # qkv
                    + 2 * 4 * 4 * 8  # q @ k^T and attn @ v: N x N x C each, one window of N = 4
                    + 4 * 8 * 8  # proj
                    + 4 * 8 * 2  # norm2
                    + 4 * 8 * 32 + 4 * 32 * 8)  # fc1, fc2 (GELU counts nothing)
    merging = 1 * 32 * 2 + 32 * 16  # LayerNorm(4C) and Linear(4C, 2C) on the one merged token
    stage1_block = 1 * 16 * 2 + 4 * 16 * 48 + 2 * 4 * 4 * 16 + 16 * 16 + 1 * 16 * 2 + 16 * 64 + 64 * 16
    output_norms = 4 * 8 * 2 + 1 * 16 * 2
    result = count_flops(model, shape=8)
    assert result.flops == patch_embed + 2 * stage0_block + merging + 2 * stage1_block + output_norms
    assert result.attention_flops == 2 * (2 * 4 * 4 * 8) + 2 * (2 * 4 * 4 * 16)
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.shape == (8, 8)


def test_swinv2_count_by_hand():
    # As the Swin case, with res-post-norm, the q and v biases applied to the qkv weight directly (counted
    # all the same), the position bias MLP Linear(2, 512), ReLU, Linear(512, heads) on the (2w-1)^2 = 9 offsets,
    # and merging that reduces before it normalises.
    model = SwinTransformerV2(embed_dims=8, depths=(2, 2), num_heads=(1, 2), window_size=2, out_indices=(0, 1),
                              impl='plain')
    patch_embed = 4 * (16 * 3 * 8) + 4 * 8 + 4 * 8 * 2

    def position_bias(heads):
        return 9 * 2 * 512 + 9 * 512 + 9 * 512 * heads

    stage0_block = position_bias(1) + 4 * 8 * 24 + 2 * 4 * 4 * 8 + 4 * 8 * 8 + 4 * 8 * 2 + 4 * 8 * 32 + 4 * 32 * 8 \
        + 4 * 8 * 2
    merging = 32 * 16 + 1 * 16 * 2
    stage1_block = position_bias(2) + 4 * 16 * 48 + 2 * 4 * 4 * 16 + 16 * 16 + 16 * 2 + 16 * 64 + 64 * 16 + 16 * 2
    output_norms = 4 * 8 * 2 + 1 * 16 * 2
    assert count_flops(model, shape=8).flops == patch_embed + 2 * stage0_block + merging + 2 * stage1_block \
        + output_norms


def test_crossformer_count_by_hand():
    # 16 x 16 image: 4 x 4 tokens of 16 channels in stage 0: SDA in 2 x 2 groups, LDA with interval 2 (the
    # paper's grouping: four groups of 2 x 2 tokens); 2 x 2 tokens of 32 in stage 1, not larger than the group:
    # one SDA group of the whole map.
    model = CrossFormer(embed_dims=16, depths=(2, 1), num_heads=(1, 2), group_size=2, crs_interval=(2, 1),
                        out_indices=(0, 1), impl='plain')
    # Four convs of kernel 4, 8, 16, 32 (stride 4) with 8, 4, 2, 2 channels at 16 positions, biases, LayerNorm.
    embedding = 16 * (16 * 3 * 8 + 64 * 3 * 4 + 256 * 3 * 2 + 1024 * 3 * 2) + 16 * 16 + 16 * 16 * 2

    def position_bias(hidden, heads):  # Linear(2, P), 3 x [LayerNorm(P), ReLU, Linear] over 9 offsets
        return 9 * 2 * hidden + 3 * (9 * hidden * 2 + 9 * hidden) + 2 * 9 * hidden * hidden + 9 * hidden * heads

    stage0_block = (16 * 16 * 2 + position_bias(1, 1) + 16 * 16 * 48 + 2 * 16 * 4 * 16 + 16 * 16 * 16
                    + 16 * 16 * 2 + 16 * 16 * 64 + 16 * 64 * 16)
    merge = 16 * 16 * 2 + (4 * 4 * 16 * 16 + 4 * 16) + (4 * 16 * 16 * 16 + 4 * 16)  # norm, conv k2 s2, conv k4 s2
    stage1_block = (4 * 32 * 2 + position_bias(2, 2) + 4 * 32 * 96 + 2 * 4 * 4 * 32 + 4 * 32 * 32 + 4 * 32 * 2
                    + 4 * 32 * 128 + 4 * 128 * 32)
    result = count_flops(model, shape=16)
    assert result.flops == embedding + 2 * stage0_block + merge + stage1_block
    assert result.attention_flops == 2 * (2 * 16 * 4 * 16) + 2 * 4 * 4 * 32


class _Layers(nn.Module):
    """One layer of each kind the rules count, and some they do not."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, groups=1)
        self.depthwise = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False)
        self.norm = nn.BatchNorm2d(4)
        self.plain_norm = nn.GroupNorm(2, 4, affine=False)
        self.sync_norm = nn.SyncBatchNorm(4)  # not a type of the list: nothing
        self.relu = nn.ReLU()
        self.gelu = nn.GELU()  # nothing
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2)
        self.deconv = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.linear = nn.Linear(8, 5)

    def forward(self, x):  # 1, 3, 8, 8
        x = self.relu(self.norm(self.conv(x)))  # 1, 4, 8, 8
        x = self.gelu(self.sync_norm(self.plain_norm(self.depthwise(x))))  # 1, 4, 4, 4
        x = self.deconv(self.up(self.pool(x)))  # 1, 4, 2, 2 -> 1, 4, 4, 4 -> 1, 2, 8, 8
        return self.linear(x)  # 1, 2, 8, 5


def test_counting_rules_are_mmcvs():
    model = _Layers().eval()
    expected = {
        'conv': 64 * 9 * 3 * 4 + 4 * 64,  # output positions x kernel x in x out, plus the bias per output
        'depthwise': 16 * 9 * 4 * 1,  # groups: in x out / groups
        'norm': 4 * 64 * 2,  # affine: twice the input elements
        'plain_norm': 4 * 16,
        'relu': 4 * 64,
        'pool': 4 * 16,  # input elements
        'up': 4 * 16,  # output elements
        'deconv': 16 * 4 * 4 * 2 + 2 * 64,  # INPUT positions x kernel x in x out, plus the bias per output
        'linear': 2 * 8 * 8 * 5,  # input elements x out features, no bias term
    }
    result = count_flops(model, shape=8)
    assert result.flops == sum(expected.values())
    assert result.parts == {name: (sum(p.numel() for p in child.parameters()), expected.get(name, 0))
                            for name, child in model.named_children()}
    assert result.attention_flops == 0


def test_fast_backbones_are_refused_and_configs_counted_plain():
    fast = SwinTransformer(embed_dims=8, depths=(2,), num_heads=(1,), strides=(4,), out_indices=(0,))
    with pytest.raises(ValueError, match="impl='plain'.*got impl='fast' in SwinTransformer"):
        count_flops(fast, shape=8)
    config = dict(model=dict(type='swin_backbones.SwinTransformer', embed_dims=8, depths=(2,), num_heads=(1,),
                             strides=(4,), out_indices=(0,), impl='fast'))
    plain = SwinTransformer(embed_dims=8, depths=(2,), num_heads=(1,), strides=(4,), out_indices=(0,), impl='plain')
    assert count_flops(config, shape=(8, 12)) == count_flops(plain, shape=(8, 12))


def test_bad_shapes_are_refused():
    model = _Layers()
    for shape in ((8,), (0, 8), (8, 8, 8), 'large'):
        with pytest.raises(ValueError, match='shape must be'):
            count_flops(model, shape=shape)


TOY_DETECTOR = 'toy/mask-rcnn_swin-toy_fpn_toy-coco'
TOY_SHAPE = (64, 96)


@pytest.fixture(scope='module')
def toy_detector():
    return count_flops(TOY_DETECTOR, shape=TOY_SHAPE)


def _mask_head(rois):
    """The toy FCN mask head (2 convs, 64 channels, 3 classes) on 14 x 14 RoI features."""
    return rois * (2 * (14 * 14 * 9 * 64 * 64 + 14 * 14 * 64 + 14 * 14 * 64)  # convs with bias, ReLUs
                   + (14 * 14 * 4 * 64 * 64 + 28 * 28 * 64) + 28 * 28 * 64  # deconv (INPUT positions), ReLU
                   + 28 * 28 * 64 * 3 + 28 * 28 * 3)  # 1x1 conv_logits


def test_detector_dummy_forward_counts_1000_boxes_and_100_masks(toy_detector):
    # The toy Mask R-CNN: 64-channel RoI features, Shared2FC box head (fc 256), 3 classes.
    box_head = 1000 * (64 * 7 * 7 * 256 + 256 * 256 + 2 * 256 + 256 * 4 + 256 * 12)  # fc, fc, 2 ReLUs, cls, reg
    assert toy_detector.parts['roi_head'][1] == box_head + _mask_head(100)
    assert toy_detector.shape == TOY_SHAPE
    assert toy_detector.flops == sum(flops for _, flops in toy_detector.parts.values())


def test_cascade_runs_every_stage_on_the_same_boxes():
    # Three stages of 4conv1fc box heads (64 channels, bias-free convs before SyncBN, which counts nothing; fc 128)
    # on the 1000 boxes, and three mask heads on the first 100.
    result = count_flops('toy/cascade-mask-rcnn_swin-toy_fpn_4conv1f-giou_toy-coco', shape=TOY_SHAPE)
    box_head = 1000 * (4 * (7 * 7 * 9 * 64 * 64 + 7 * 7 * 64) + 64 * 7 * 7 * 128 + 128 + 128 * 4 + 128 * 12)
    assert result.parts['roi_head'][1] == 3 * (box_head + _mask_head(100))


def test_segmentor_dummy_forward_runs_the_decode_head_only():
    result = count_flops('toy/upernet_swin-toy_toy-ade', shape=(64, 96))
    assert result.parts['decode_head'][1] > 0
    assert result.parts['auxiliary_head'][1] == 0 < result.parts['auxiliary_head'][0]
    assert result.params == sum(params for params, _ in result.parts.values())


def test_command_line(capsys, toy_detector):
    assert flops_main([TOY_DETECTOR, '--shape', *map(str, TOY_SHAPE)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == 'input: 1 x 3 x 64 x 96 (height x width)'
    assert lines[-1] == f'params {toy_detector.params / 1e6:.3f}M  FLOPs {toy_detector.flops / 1e9:.1f}G'
    assert flops_main(['no-such-config']) == 2
    assert 'error: no config' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        flops_main([TOY_DETECTOR, '--shape', '1', '2', '3'])
    assert exited.value.code == 2
    assert '--shape takes a height and a width' in capsys.readouterr().err
