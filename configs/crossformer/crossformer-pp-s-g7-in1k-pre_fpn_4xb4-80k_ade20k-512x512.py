# Semantic FPN + CrossFormer++-S (CrossFormer++'s LDA with a fixed interval, ACL) on ADE20K (recipe as
# CrossFormer-S, drop path 0.2): the authors' segmentation/configs/crossformer_pp/fpn_crossformerpp_s_ade20k_40k.py
# (80k iterations). Published: mIoU 47.4, 27.1M params. Needs checkpoints/crossformer-pp-s.pth.
_base_ = './crossformer-s-g7-in1k-pre_fpn_4xb4-80k_ade20k-512x512.py'

pretrained = 'checkpoints/crossformer-pp-s.pth'
model = dict(
    backbone=dict(
        arch='pp-small',  # embed_dims=64, depths=(2, 2, 18, 2), num_heads=(2, 4, 8, 16), ACL
        adaptive_interval=False,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
