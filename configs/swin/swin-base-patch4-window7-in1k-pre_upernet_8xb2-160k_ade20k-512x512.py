# UperNet + Swin-B on ADE20K (recipe as Swin-T). Published: mIoU 48.1 / 49.7, 121M params.
# Needs checkpoints/swin_base_patch4_window7_224.pth:
#   https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window7_224.pth
_base_ = './swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/swin_base_patch4_window7_224.pth'
model = dict(
    backbone=dict(
        arch='base',  # embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
