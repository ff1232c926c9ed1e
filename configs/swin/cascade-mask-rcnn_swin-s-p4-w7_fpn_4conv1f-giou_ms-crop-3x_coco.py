# Cascade Mask R-CNN + FPN, Swin-S, COCO, 3x (recipe as the Swin-T 3x config, drop path 0.2): the authors'
# cascade_mask_rcnn_swin_small_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py.
# Published: box AP 51.9, mask AP 45.0, 107M params.
# Needs checkpoints/swin_small_patch4_window7_224.pth:
#   https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_small_patch4_window7_224.pth
_base_ = './cascade-mask-rcnn_swin-t-p4-w7_fpn_4conv1f-giou_ms-crop-3x_coco.py'

pretrained = 'checkpoints/swin_small_patch4_window7_224.pth'
model = dict(
    backbone=dict(
        arch='small',  # embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
