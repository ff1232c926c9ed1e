# Cascade Mask R-CNN + FPN, Swin-T, COCO, 3x schedule (36 epochs, lr steps at 27 and 33), otherwise the 1x
# recipe (4conv1fc box heads with SyncBN, GIoU loss, multi-scale training with the crop step, AdamW), with
# drop path 0.2: the authors' cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py.
# Published: box AP 50.4, mask AP 43.7, 86M params.
_base_ = './cascade-mask-rcnn_swin-t-p4-w7_fpn_4conv1f-giou_ms-crop-1x_coco.py'

model = dict(backbone=dict(drop_path_rate=0.2))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1)
]
