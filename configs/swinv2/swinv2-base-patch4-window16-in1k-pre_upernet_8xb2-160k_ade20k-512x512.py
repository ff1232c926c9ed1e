# UperNet + SwinV2-B (window 16, pretrained windows 8) on ADE20K (recipe as SwinV2-T). No published mIoU
# for this model.
# Needs checkpoints/swinv2_base_patch4_window8_256.pth:
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window8_256.pth
_base_ = './swinv2-tiny-patch4-window16-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/swinv2_base_patch4_window8_256.pth'
model = dict(
    backbone=dict(
        arch='base',  # embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
