# UperNet + CrossFormer-B on ADE20K (recipe as CrossFormer-S, drop path 0.3).
# Published: mIoU 49.7 / 50.6, 83.6M params. Needs checkpoints/crossformer-b.pth.
_base_ = './crossformer-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/crossformer-b.pth'
model = dict(
    backbone=dict(
        arch='base',  # embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
