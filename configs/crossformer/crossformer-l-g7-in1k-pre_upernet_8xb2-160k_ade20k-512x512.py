# UperNet + CrossFormer-L on ADE20K (recipe as CrossFormer-S, drop path 0.5).
# Published: mIoU 50.4 / 51.4, 125.5M params. Needs checkpoints/crossformer-l.pth.
_base_ = './crossformer-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/crossformer-l.pth'
model = dict(
    backbone=dict(
        arch='large',  # embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
