# Cascade Mask R-CNN + FPN, Swin-B, COCO, 3x (recipe as the Swin-T 3x config, drop path 0.3): the authors'
# cascade_mask_rcnn_swin_base_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py.
# Published: box AP 51.9, mask AP 45.0, 145M params.
# Needs checkpoints/swin_base_patch4_window7_224.pth (ImageNet-1K):
#   https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window7_224.pth
_base_ = './cascade-mask-rcnn_swin-t-p4-w7_fpn_4conv1f-giou_ms-crop-3x_coco.py'

pretrained = 'checkpoints/swin_base_patch4_window7_224.pth'
model = dict(
    backbone=dict(
        arch='base',  # embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
