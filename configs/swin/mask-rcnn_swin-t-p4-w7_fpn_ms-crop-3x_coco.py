# Mask R-CNN + FPN, Swin-T, COCO, 3x schedule (36 epochs, lr steps at 27 and 33) with the multi-scale
# training of the Swin paper (shorter side 480-800, or resize + random crop + resize, as in DETR) and drop
# path 0.2: the authors' mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_3x_coco.py.
# Published: box AP 46.0, mask AP 41.6, 47.8M params.
_base_ = './mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py'

model = dict(backbone=dict(drop_path_rate=0.2))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1)
]
