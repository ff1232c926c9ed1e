# Mask R-CNN + FPN with a slim Swin on the toy COCO-format set (tools/make_toy_data.py), for CPUs:
# 128x128 images, a 4-stage Swin with 32..256 channels, 64-channel FPN and heads, 3 classes,
# trained from scratch for a few hundred iterations. Same recipe shape as the COCO configs
# (AdamW, no decay on position tables and norms), scaled down.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/toy_coco_instance.py',
    '../_base_/schedules/toy_det_runtime.py',
]
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)

num_classes = 3
channels = 64
model = dict(
    backbone=dict(
        _delete_=True,
        type='swin_backbones.SwinTransformer',
        embed_dims=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8),
        window_size=7,
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(in_channels=channels, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(num_convs=2, in_channels=channels, conv_out_channels=channels, num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(max_per_img=20)))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
