# Mask R-CNN + FPN, CrossFormer-B, COCO, 1x (recipe as CrossFormer-S, drop path 0.3).
# Published: box AP 47.2, mask AP 42.7, 71.5M params. Needs checkpoints/crossformer-b.pth.
_base_ = './mask-rcnn_crossformer-s-g7_fpn_1x_coco.py'

pretrained = 'checkpoints/crossformer-b.pth'
model = dict(
    backbone=dict(
        arch='base',  # embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
