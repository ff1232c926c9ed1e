# Semantic FPN + CrossFormer-B on ADE20K (recipe as CrossFormer-S, drop path 0.3): the authors'
# fpn_crossformer_b_ade20k_40k.py (80k iterations). Published: mIoU 48.0, 55.6M params.
# Needs checkpoints/crossformer-b.pth.
_base_ = './crossformer-s-g7-in1k-pre_fpn_4xb4-80k_ade20k-512x512.py'

pretrained = 'checkpoints/crossformer-b.pth'
model = dict(
    backbone=dict(
        arch='base',  # embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
