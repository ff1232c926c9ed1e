# RetinaNet + FPN, CrossFormer++-S (CrossFormer++'s LDA with a fixed interval, ACL), COCO, 1x (recipe as
# CrossFormer-S, drop path 0.2): the authors' detection/configs/crossformer_pp/retinanet_crossformerpp_s_fpn_1x_coco.py.
# Published: box AP 45.1 (the authors' table repeats CrossFormer-S's 40.8M as its size: see README, Configs).
# Needs checkpoints/crossformer-pp-s.pth (the authors' CrossFormer++-S release).
_base_ = './retinanet_crossformer-s-g7_fpn_1x_coco.py'

pretrained = 'checkpoints/crossformer-pp-s.pth'
model = dict(
    backbone=dict(
        arch='pp-small',  # embed_dims=64, depths=(2, 2, 18, 2), num_heads=(2, 4, 8, 16), ACL
        adaptive_interval=False,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
