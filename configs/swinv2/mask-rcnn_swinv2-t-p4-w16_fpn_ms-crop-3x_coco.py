# Mask R-CNN + FPN, SwinV2-T (window 16, pretrained windows 8), COCO, 3x schedule (36 epochs, lr steps at
# 27 and 33) with the multi-scale training of the Swin configs. No published box/mask AP for this model.
_base_ = './mask-rcnn_swinv2-t-p4-w16_fpn_ms-crop-1x_coco.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1)
]
