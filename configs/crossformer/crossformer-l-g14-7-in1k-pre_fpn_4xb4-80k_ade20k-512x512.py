# Semantic FPN + CrossFormer-L on ADE20K (recipe as CrossFormer-S, drop path 0.5): the authors'
# fpn_crossformer_l_ade20k_40k.py (80k iterations), which uses group sizes 14, 14, 7, 7 and LDA intervals
# 16, 8, 2, 1 (the dynamic position bias has no size-dependent parameters, so the ImageNet checkpoint trained
# with group size 7 loads as it is). Published: mIoU 49.1, 95.4M params.
# Needs checkpoints/crossformer-l.pth.
_base_ = './crossformer-s-g7-in1k-pre_fpn_4xb4-80k_ade20k-512x512.py'

pretrained = 'checkpoints/crossformer-l.pth'
model = dict(
    backbone=dict(
        arch='large',  # embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)
        group_size=(14, 14, 7, 7),
        crs_interval=(16, 8, 2, 1),
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
