# Mask R-CNN + FPN, CrossFormer-S, COCO, 3x schedule (36 epochs, lr steps at 27 and 33) with multi-scale
# training (shorter side 480-800, or resize + random crop + resize), as the Swin 3x configs. The authors
# publish no config for it: the optimizer is their 1x file's, the schedule and pipeline the Swin 3x recipe's.
# Published: box AP 48.7, mask AP 43.9, 50.2M params.
_base_ = ['./mask-rcnn_crossformer-s-g7_fpn_1x_coco.py', '../_base_/datasets/coco_instance_ms-crop-3x.py']

train_dataloader = dict(dataset=dict(pipeline={{_base_.ms_crop_train_pipeline}}))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1)
]
