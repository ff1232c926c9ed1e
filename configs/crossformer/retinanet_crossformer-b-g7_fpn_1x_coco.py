# RetinaNet + FPN, CrossFormer-B, COCO, 1x (recipe as CrossFormer-S, drop path 0.3): the authors'
# retinanet_crossformer_b_fpn_1x_coco.py. Published: box AP 46.2, 62.1M params.
# Needs checkpoints/crossformer-b.pth.
_base_ = './retinanet_crossformer-s-g7_fpn_1x_coco.py'

pretrained = 'checkpoints/crossformer-b.pth'
model = dict(
    backbone=dict(
        arch='base',  # embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
