# Cascade Mask R-CNN + FPN with a slim Swin on the toy COCO-format set, for CPUs: the twin of the Swin Cascade
# Mask R-CNN configs (configs/swin/cascade-mask-rcnn_*) at the size of mask-rcnn_swin-toy_fpn_toy-coco.py,
# whose backbone, FPN, RPN and schedule it keeps: three cascade stages whose box heads have 4 shared convs
# with SyncBN (BN when training without distribution: mmengine converts it) and 1 fc, GIoU loss on decoded
# boxes, and the multi-scale training with the crop step, at 128-pixel scale.
_base_ = './mask-rcnn_swin-toy_fpn_toy-coco.py'

channels = 64
num_classes = 3
bbox_head_4conv1fc = dict(
    type='ConvFCBBoxHead',
    num_shared_convs=4,
    num_shared_fcs=1,
    in_channels=channels,
    conv_out_channels=channels,
    fc_out_channels=128,
    roi_feat_size=7,
    num_classes=num_classes,
    reg_class_agnostic=False,
    reg_decoded_bbox=True,
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
rcnn_stage_train_cfg = dict(
    sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
    mask_size=28,
    pos_weight=-1,
    debug=False)
model = dict(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True,
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=channels,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=[
            dict(bbox_head_4conv1fc,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=[0.1, 0.1, 0.2, 0.2])),
            dict(bbox_head_4conv1fc,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=[0.05, 0.05, 0.1, 0.1])),
            dict(bbox_head_4conv1fc,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=[0.033, 0.033, 0.067, 0.067])),
        ],
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=channels,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=2,
            in_channels=channels,
            conv_out_channels=channels,
            num_classes=num_classes,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn=[
        dict(rcnn_stage_train_cfg,
             assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                           match_low_quality=False, ignore_iof_thr=-1))
        for iou in (0.5, 0.6, 0.7)
    ]))

# Shorter side 96-128, or resize + random crop + resize: the Swin recipe's multi-scale training scaled to the
# toy images.
toy_scales = [(128, 96), (128, 112), (128, 128)]
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='RandomFlip', prob=0.5),
        dict(
            type='RandomChoice',
            transforms=[[dict(type='RandomChoiceResize', scales=toy_scales, keep_ratio=True)], [
                dict(type='RandomChoiceResize', scales=[(128, 80), (128, 96)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(64, 96), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=toy_scales, keep_ratio=True)
            ]]),
        dict(type='PackDetInputs')
    ]))
