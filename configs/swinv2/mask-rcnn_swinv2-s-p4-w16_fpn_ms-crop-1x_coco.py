# Mask R-CNN + FPN, SwinV2-S (window 16, pretrained windows 8), COCO, 1x schedule (recipe as SwinV2-T).
# No published box/mask AP for this model.
# Needs checkpoints/swinv2_small_patch4_window8_256.pth:
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_small_patch4_window8_256.pth
_base_ = './mask-rcnn_swinv2-t-p4-w16_fpn_ms-crop-1x_coco.py'

pretrained = 'checkpoints/swinv2_small_patch4_window8_256.pth'
model = dict(
    backbone=dict(
        arch='small',  # embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
