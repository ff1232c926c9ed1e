"""Recipe fidelity: every config that reproduces a published model trains and tests as the authors' config
file does, field by field (backbone, neck, heads and losses, assigners and NMS, input normalisation,
optimizer, weight decay exemptions, gradient clipping, schedule, batch size, training and test pipelines,
multi-scale test).

The expected values are data, copied from the authors' files (mmdet 2 / mmseg 0.x configs) and written in
the neutral terms that :func:`recipe_of` reads a mmdet 3 / mmseg 1 config into. The sources:

* Swin-OD: SwinTransformer/Swin-Transformer-Object-Detection, configs/swin/*.py and the configs/_base_/ files
  they name (models/mask_rcnn_swin_fpn.py, models/cascade_mask_rcnn_swin_fpn.py, datasets/coco_instance.py,
  schedules/schedule_1x.py).
* Swin-Seg: SwinTransformer/Swin-Transformer-Semantic-Segmentation, configs/swin/upernet_swin_*.py,
  configs/_base_/models/upernet_swin.py, datasets/ade20k.py, schedules/schedule_160k.py.
* CF: cheerss/CrossFormer (main branch; the crossformer branch holds the same values unless noted),
  detection/configs/{crossformer,crossformer_pp}/*.py with detection/configs/_base_/, segmentation/configs/
  {crossformer,crossformer_pp}/*.py with segmentation/configs/_base_/, and the backbones' fixed arguments in
  {detection,segmentation}/crossformer_factory.py (drop path, ACL).
* mmdet: mmdet 3.3.0's configs/swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py and its _base_ files.

What mmdet 3 / mmseg 1 express differently (docs/user_guides/configs.md lists it): mmdet 2's
Normalize/Pad steps are the data preprocessor's mean/std/padding here; AutoAugment's policies are a
RandomChoice; MultiScaleFlipAug with one scale and no flip is a Resize; keys that mmdet 3 dropped (debug,
nms_post, nms_across_levels) are not compared. Not compared at all, because mmdet 3 / mmseg 1 cannot express
them in a config that also runs on CPUs, and docs/user_guides/configs.md says so: Swin-OD's mixed-precision
training (apex, --amp here), and CF's AlignResize test transform (a resize to multiples of 32, which mmseg 1
lacks).
"""
import inspect
import os.path as osp
import re

import pytest
from mmengine.registry import MODELS

from swin_backbones import PyramidBackbone
from swin_backbones.model_index import load_model_index

from .helpers import CONFIGS, build_on_meta, load_cached

# ------------------------------------------------------------------------------------ shared values
IMAGENET_MEAN_STD = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
SYNC_BN = dict(type='SyncBN', requires_grad=True)
COCO_SCALE = [(1333, 800)]  # keep-ratio scales as (longer side, shorter side)
# Swin-OD's "mstrain_480-800" (every Swin-OD file here): shorter side 480, 512, ..., 800, or the DETR-style
# resize to 400/500/600, crop of 384-600 pixels, resize to 480-800.
SCALES_480_800 = [(1333, short) for short in range(480, 801, 32)]
MS_CROP_TRAIN = [
    ('annotations', dict(with_bbox=True, with_mask=True)),
    ('flip', dict(prob=0.5)),
    ('choice', dict(branches=[
        [('resize', dict(scales=SCALES_480_800, keep_ratio=True))],
        [('resize', dict(scales=[(1333, 400), (1333, 500), (1333, 600)], keep_ratio=True)),
         ('crop', dict(crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True)),
         ('resize', dict(scales=SCALES_480_800, keep_ratio=True))],
    ])),
]
# The mmdet 2 coco_instance.py / coco_detection.py training and test pipelines (Swin-OD, CF, mmdet's).
COCO_INSTANCE_TRAIN = [('annotations', dict(with_bbox=True, with_mask=True)),
                       ('resize', dict(scales=COCO_SCALE, keep_ratio=True)), ('flip', dict(prob=0.5))]
COCO_DETECTION_TRAIN = [('annotations', dict(with_bbox=True)),
                        ('resize', dict(scales=COCO_SCALE, keep_ratio=True)), ('flip', dict(prob=0.5))]
COCO_TEST = [('resize', dict(scales=COCO_SCALE, keep_ratio=True))]
COCO_NORMALIZE = dict(IMAGENET_MEAN_STD, pad_size_divisor=32)
# ADE20K (Swin-Seg and CF datasets/ade20k.py, CF ade20k_swin.py): the same training pipeline.
ADE_TRAIN = [
    ('annotations', dict(reduce_zero_label=True)),
    ('random_resize', dict(scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True)),
    ('crop', dict(crop_size=(512, 512), cat_max_ratio=0.75)),
    ('flip', dict(prob=0.5)),
    ('photometric_distortion', dict()),
]
# Single-scale test at (2048, 512), keeping the ratio (CF's AlignResize also rounds to multiples of 32).
ADE_TEST = [('resize', dict(scales=[(2048, 512)], keep_ratio=True))]
ADE_NORMALIZE = dict(IMAGENET_MEAN_STD, size=(512, 512), pad_val=0, seg_pad_val=255)
MS_RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]

ADAMW = dict(type='AdamW', betas=(0.9, 0.999))  # CF's files give no betas: torch's defaults, the same
SWIN_NO_DECAY = dict(custom_keys={'absolute_pos_embed': dict(decay_mult=0.),
                                  'relative_position_bias_table': dict(decay_mult=0.),
                                  'norm': dict(decay_mult=0.)})

# ---------------------------------------------------------------------------------------- backbones
# In this package's argument names (the authors': embed_dim, ape, use_checkpoint, CrossFormer_S/B/L/S2).
SWIN_COMMON = dict(type='SwinTransformer', window_size=7, mlp_ratio=4, qkv_bias=True, qk_scale=None, drop_rate=0.,
                   attn_drop_rate=0., use_abs_pos_embed=False, patch_norm=True, out_indices=(0, 1, 2, 3),
                   with_cp=False)
SWIN_T = dict(SWIN_COMMON, embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
SWIN_S = dict(SWIN_COMMON, embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
SWIN_B = dict(SWIN_COMMON, embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
# crossformer_factory.py: CrossFormer_S / _B / _L / _S2 with their fixed drop path, ACL only for _S2 (whose
# code is CrossFormer++'s grouping); group sizes and intervals from each config file.
CF_COMMON = dict(type='CrossFormer', group_size=(7, 7, 7, 7), crs_interval=(8, 4, 2, 1), adaptive_interval=False,
                 mlp_ratio=4, qkv_bias=True, qk_scale=None, drop_rate=0., attn_drop_rate=0., out_indices=(0, 1, 2, 3),
                 with_cp=False)
CF_S = dict(CF_COMMON, embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), lda_type='paper', use_acl=False,
            drop_path_rate=0.2)
CF_B = dict(CF_COMMON, embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), lda_type='paper',
            use_acl=False, drop_path_rate=0.3)
CF_L = dict(CF_COMMON, embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), lda_type='paper',
            use_acl=False, drop_path_rate=0.5)
CF_PP_S = dict(CF_COMMON, embed_dims=64, depths=(2, 2, 18, 2), num_heads=(2, 4, 8, 16), lda_type='pp',
               use_acl=True, drop_path_rate=0.2)


def widths(backbone):
    return [backbone['embed_dims'] * 2 ** i for i in range(4)]


# ------------------------------------------------------------------------------------------- models
def mask_rcnn(backbone):
    """Swin-OD _base_/models/mask_rcnn_swin_fpn.py = CF _base_/models/mask_rcnn_r50_fpn.py (heads and losses)."""
    return {
        'model.type': 'MaskRCNN',
        'model.neck': dict(type='FPN', in_channels=widths(backbone), out_channels=256, num_outs=5),
        'model.rpn_head': dict(
            type='RPNHead', in_channels=256, feat_channels=256,
            anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                                  strides=[4, 8, 16, 32, 64]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        'model.roi_head': dict(
            type='StandardRoIHead',
            bbox_roi_extractor=dict(type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=7,
                                                                              sampling_ratio=0),
                                    out_channels=256, featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(
                type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=80,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
                reg_class_agnostic=False,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
            mask_roi_extractor=dict(type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=14,
                                                                              sampling_ratio=0),
                                    out_channels=256, featmap_strides=[4, 8, 16, 32]),
            mask_head=dict(type='FCNMaskHead', num_convs=4, in_channels=256, conv_out_channels=256, num_classes=80,
                           loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
        'model.train_cfg': dict(
            rpn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                                   match_low_quality=True, ignore_iof_thr=-1),
                     sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                                  add_gt_as_proposals=False),
                     allowed_border=-1, pos_weight=-1),
            rpn_proposal=dict(nms_pre=2000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                              min_bbox_size=0),
            rcnn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                                    match_low_quality=True, ignore_iof_thr=-1),
                      sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                                   add_gt_as_proposals=True),
                      mask_size=28, pos_weight=-1)),
        'model.test_cfg': dict(
            rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100,
                      mask_thr_binary=0.5)),
    }


def cascade_mask_rcnn_4conv1f_giou(backbone):
    """Swin-OD _base_/models/cascade_mask_rcnn_swin_fpn.py with the box heads of the cascade_*_giou_4conv1f_* files."""
    def box_head(stds):
        return dict(type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1, in_channels=256,
                    conv_out_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=80,
                    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=stds),
                    reg_class_agnostic=False, reg_decoded_bbox=True, norm_cfg=SYNC_BN,
                    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                    loss_bbox=dict(type='GIoULoss', loss_weight=10.0))

    def stage(iou):
        return dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                                  match_low_quality=False, ignore_iof_thr=-1),
                    sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                                 add_gt_as_proposals=True),
                    mask_size=28, pos_weight=-1)

    base = mask_rcnn(backbone)
    return dict(base, **{
        'model.type': 'CascadeRCNN',
        'model.rpn_head': dict(base['model.rpn_head'], loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0,
                                                                      loss_weight=1.0)),
        'model.roi_head': dict(
            base['model.roi_head'], type='CascadeRoIHead', num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
            bbox_head=[box_head([0.1, 0.1, 0.2, 0.2]), box_head([0.05, 0.05, 0.1, 0.1]),
                       box_head([0.033, 0.033, 0.067, 0.067])]),
        'model.train_cfg': dict(
            rpn=dict(base['model.train_cfg']['rpn'], allowed_border=0),
            rpn_proposal=dict(nms_pre=2000, max_per_img=2000, nms=dict(type='nms', iou_threshold=0.7),
                              min_bbox_size=0),
            rcnn=[stage(0.5), stage(0.6), stage(0.7)]),
    })


def retinanet(in_channels, start_level):
    """CF detection/configs/_base_/models/retinanet_r50_fpn.py = mmdet 3.3's _base_/models/retinanet_r50_fpn.py."""
    return {
        'model.type': 'RetinaNet',
        'model.neck': dict(type='FPN', in_channels=in_channels, out_channels=256, start_level=start_level,
                           add_extra_convs='on_input', num_outs=5),
        'model.bbox_head': dict(
            type='RetinaHead', num_classes=80, in_channels=256, stacked_convs=4, feat_channels=256,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                                  ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        'model.train_cfg': dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                              ignore_iof_thr=-1),
                                allowed_border=-1, pos_weight=-1),
        'model.test_cfg': dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                               max_per_img=100),
    }


def upernet(backbone):
    """Swin-Seg _base_/models/upernet_swin.py = CF _base_/models/upernet_crossformer.py, 150 classes."""
    channels = widths(backbone)
    return {
        'model.type': 'EncoderDecoder',
        'model.decode_head': dict(
            type='UPerHead', in_channels=channels, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6), channels=512,
            dropout_ratio=0.1, num_classes=150, norm_cfg=SYNC_BN, align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        'model.auxiliary_head': dict(
            type='FCNHead', in_channels=channels[2], in_index=2, channels=256, num_convs=1, concat_input=False,
            dropout_ratio=0.1, num_classes=150, norm_cfg=SYNC_BN, align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
        'model.test_cfg': dict(mode='whole'),
    }


def semantic_fpn(backbone):
    """CF segmentation/configs/_base_/models/fpn_r50.py, 150 classes, no auxiliary head."""
    return {
        'model.type': 'EncoderDecoder',
        'model.neck': dict(type='FPN', in_channels=widths(backbone), out_channels=256, num_outs=4),
        'model.decode_head': dict(
            type='FPNHead', in_channels=[256, 256, 256, 256], in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32],
            channels=128, dropout_ratio=0.1, num_classes=150, norm_cfg=SYNC_BN, align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        'model.auxiliary_head': None,
        'model.test_cfg': dict(mode='whole'),
    }


# ---------------------------------------------------------------------------------------- recipes
def swin_od_mask_rcnn(backbone, epochs, steps):
    """Swin-OD mask_rcnn_swin_*_patch4_window7_mstrain_480-800_adamw_{1x,3x}_coco.py."""
    return dict(mask_rcnn(backbone), **{
        'backbone': backbone, 'normalize': COCO_NORMALIZE,
        'optimizer': dict(ADAMW, lr=1e-4, weight_decay=0.05), 'paramwise': SWIN_NO_DECAY, 'clip_grad': None,
        'schedule': dict(epochs=epochs, lr_steps=steps, gamma=0.1, warmup_iters=500, warmup_ratio=0.001),
        'batch': dict(per_gpu=2, total=16),
        'train_pipeline': MS_CROP_TRAIN, 'test_pipeline': COCO_TEST,
    })


def swin_od_cascade(backbone, epochs, steps):
    """Swin-OD cascade_mask_rcnn_swin_*_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_{1x,3x}_coco.py."""
    return dict(swin_od_mask_rcnn(backbone, epochs, steps), **cascade_mask_rcnn_4conv1f_giou(backbone))


def cf_detection_training(backbone, epochs=12, steps=(8, 11), train_pipeline=COCO_INSTANCE_TRAIN):
    """What CF's detection files set besides the model: AdamW, warm-up and steps, 8 GPUs x 2 images."""
    return {
        'backbone': backbone, 'normalize': COCO_NORMALIZE,
        'optimizer': dict(ADAMW, lr=1e-4, weight_decay=1e-4), 'paramwise': {}, 'clip_grad': None,
        'schedule': dict(epochs=epochs, lr_steps=list(steps), gamma=0.1, warmup_iters=500, warmup_ratio=0.001),
        'batch': dict(per_gpu=2, total=16),  # detection/README.md: batch 16 on 8 GPUs
        'train_pipeline': train_pipeline, 'test_pipeline': COCO_TEST,
    }


def cf_mask_rcnn(backbone, **training):
    """CF detection/configs/crossformer{,_pp}/mask_rcnn_crossformer{,pp}_{s,b}_fpn_1x_coco.py."""
    return dict(mask_rcnn(backbone), **cf_detection_training(backbone, **training))


def cf_retinanet(backbone):
    """CF detection/configs/crossformer{,_pp}/retinanet_crossformer{,pp}_{s,b}_fpn_1x_coco.py."""
    return dict(retinanet(widths(backbone), start_level=1),
                **cf_detection_training(backbone, train_pipeline=COCO_DETECTION_TRAIN))


def swin_seg_upernet(backbone):
    """Swin-Seg upernet_swin_{tiny,small,base}_patch4_window7_512x512_160k_ade20k.py."""
    return dict(upernet(backbone), **{
        'backbone': backbone, 'normalize': ADE_NORMALIZE,
        'optimizer': dict(ADAMW, lr=6e-5, weight_decay=0.01), 'paramwise': SWIN_NO_DECAY, 'clip_grad': None,
        'schedule': dict(iters=160000, poly_power=1.0, poly_min_lr=0.0, poly_iters=(0, 160000), warmup_iters=1500,
                         warmup_ratio=1e-6),
        'batch': dict(per_gpu=2, total=16),  # "trained on 8 GPUs with 2 images per GPU"
        'train_pipeline': ADE_TRAIN, 'test_pipeline': ADE_TEST,
        'tta': dict(ratios=MS_RATIOS, flip=True),  # the README's "ms+flip" (mmseg 0.11's --aug-test)
    })


def cf_upernet(backbone):
    """CF segmentation/configs/crossformer{,_pp}/upernet_crossformer{,pp}_{s,b,l}_ade20k.py (datasets/ade20k_swin.py);
    the main branch's CrossFormer-S file gives its auxiliary head 256 input channels, the crossformer branch's 384,
    the width of CrossFormer-S's third stage."""
    return dict(swin_seg_upernet(backbone), **{
        'paramwise': dict(custom_keys={'norm': dict(decay_mult=0.)}),
        # ade20k_swin.py sets the six ratios and flip=False; the published MS IoU is that test.
        'tta': dict(ratios=MS_RATIOS, flip=False),
    })


def cf_semantic_fpn(backbone):
    """CF segmentation/configs/crossformer{,_pp}/fpn_crossformer{,pp}_{s,b,l}_ade20k_40k.py: named 40k, they set
    max_iters=80000 at samples_per_gpu=4, and segmentation/README.md gives 80k iterations at batch 16."""
    return dict(semantic_fpn(backbone), **{
        'backbone': backbone, 'normalize': ADE_NORMALIZE,
        'optimizer': dict(ADAMW, lr=1e-4, weight_decay=1e-4), 'paramwise': {}, 'clip_grad': None,
        'schedule': dict(iters=80000, poly_power=0.9, poly_min_lr=0.0, poly_iters=(0, 80000)),
        'batch': dict(per_gpu=4, total=16),
        'train_pipeline': ADE_TRAIN, 'test_pipeline': ADE_TEST,
    })


RECIPES = {
    # Swin-OD mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py (drop path 0.1)
    'swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py':
        swin_od_mask_rcnn(dict(SWIN_T, drop_path_rate=0.1), 12, [8, 11]),
    # Swin-OD mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_3x_coco.py
    'swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py': swin_od_mask_rcnn(dict(SWIN_T, drop_path_rate=0.2), 36,
                                                                           [27, 33]),
    # Swin-OD mask_rcnn_swin_small_patch4_window7_mstrain_480-800_adamw_3x_coco.py
    'swin/mask-rcnn_swin-s-p4-w7_fpn_ms-crop-3x_coco.py': swin_od_mask_rcnn(dict(SWIN_S, drop_path_rate=0.2), 36,
                                                                           [27, 33]),
    # Swin-OD cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_1x_coco.py (drop path 0.0)
    'swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_4conv1f-giou_ms-crop-1x_coco.py': swin_od_cascade(
        dict(SWIN_T, drop_path_rate=0.0), 12, [8, 11]),
    # Swin-OD cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py
    'swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_4conv1f-giou_ms-crop-3x_coco.py': swin_od_cascade(
        dict(SWIN_T, drop_path_rate=0.2), 36, [27, 33]),
    # Swin-OD cascade_mask_rcnn_swin_small_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py
    'swin/cascade-mask-rcnn_swin-s-p4-w7_fpn_4conv1f-giou_ms-crop-3x_coco.py': swin_od_cascade(
        dict(SWIN_S, drop_path_rate=0.2), 36, [27, 33]),
    # Swin-OD cascade_mask_rcnn_swin_base_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py (drop path 0.3)
    'swin/cascade-mask-rcnn_swin-b-p4-w7_fpn_4conv1f-giou_ms-crop-3x_coco.py': swin_od_cascade(
        dict(SWIN_B, drop_path_rate=0.3), 36, [27, 33]),
    # mmdet 3.3.0 configs/swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py: stages 2-4, FPN from its first input,
    # SGD (schedule_1x.py) at lr 0.01.
    'swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py': dict(
        retinanet([192, 384, 768], start_level=0), **{
            'backbone': dict(SWIN_T, drop_path_rate=0.2, out_indices=(1, 2, 3)), 'normalize': COCO_NORMALIZE,
            'optimizer': dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4), 'paramwise': {},
            'clip_grad': None,
            'schedule': dict(epochs=12, lr_steps=[8, 11], gamma=0.1, warmup_iters=500, warmup_ratio=0.001),
            'batch': dict(per_gpu=2, total=16),
            'train_pipeline': COCO_DETECTION_TRAIN, 'test_pipeline': COCO_TEST}),
    # CF detection/configs/crossformer/mask_rcnn_crossformer_s_fpn_1x_coco.py
    'crossformer/mask-rcnn_crossformer-s-g7_fpn_1x_coco.py': cf_mask_rcnn(CF_S),
    # No CF file (detection/README.md lists the result with "-" as its config): the 1x file's model and
    # optimizer with Swin-OD's 3x schedule and multi-scale training, as the CrossFormer paper describes.
    'crossformer/mask-rcnn_crossformer-s-g7_fpn_ms-crop-3x_coco.py': cf_mask_rcnn(
        CF_S, epochs=36, steps=[27, 33], train_pipeline=MS_CROP_TRAIN),
    # CF detection/configs/crossformer/mask_rcnn_crossformer_b_fpn_1x_coco.py
    'crossformer/mask-rcnn_crossformer-b-g7_fpn_1x_coco.py': cf_mask_rcnn(CF_B),
    # CF detection/configs/crossformer_pp/mask_rcnn_crossformerpp_s_fpn_1x_coco.py
    'crossformer/mask-rcnn_crossformer-pp-s-g7_fpn_1x_coco.py': cf_mask_rcnn(CF_PP_S),
    # CF detection/configs/crossformer/retinanet_crossformer_s_fpn_1x_coco.py
    'crossformer/retinanet_crossformer-s-g7_fpn_1x_coco.py': cf_retinanet(CF_S),
    # CF detection/configs/crossformer/retinanet_crossformer_b_fpn_1x_coco.py
    'crossformer/retinanet_crossformer-b-g7_fpn_1x_coco.py': cf_retinanet(CF_B),
    # CF detection/configs/crossformer_pp/retinanet_crossformerpp_s_fpn_1x_coco.py
    'crossformer/retinanet_crossformer-pp-s-g7_fpn_1x_coco.py': cf_retinanet(CF_PP_S),
    # Swin-Seg upernet_swin_{tiny,small,base}_patch4_window7_512x512_160k_ade20k.py (drop path 0.3 each)
    'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py': swin_seg_upernet(
        dict(SWIN_T, drop_path_rate=0.3)),
    'swin/swin-small-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py': swin_seg_upernet(
        dict(SWIN_S, drop_path_rate=0.3)),
    'swin/swin-base-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py': swin_seg_upernet(
        dict(SWIN_B, drop_path_rate=0.3)),
    # CF segmentation/configs/crossformer/upernet_crossformer_{s,b,l}_ade20k.py and
    # crossformer_pp/upernet_crossformerpp_s_ade20k.py
    'crossformer/crossformer-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py': cf_upernet(CF_S),
    'crossformer/crossformer-b-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py': cf_upernet(CF_B),
    'crossformer/crossformer-l-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py': cf_upernet(CF_L),
    'crossformer/crossformer-pp-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py': cf_upernet(CF_PP_S),
    # CF segmentation/configs/crossformer/fpn_crossformer_{s,b,l}_ade20k_40k.py and
    # crossformer_pp/fpn_crossformerpp_s_ade20k_40k.py (the crossformer branch's S file uses CrossFormer-L's
    # group sizes 14, 14, 7, 7 and intervals 16, 8, 2, 1; the main branch's, followed here, 7 and 8, 4, 2, 1)
    'crossformer/crossformer-s-g7-in1k-pre_fpn_4xb4-80k_ade20k-512x512.py': cf_semantic_fpn(CF_S),
    'crossformer/crossformer-b-g7-in1k-pre_fpn_4xb4-80k_ade20k-512x512.py': cf_semantic_fpn(CF_B),
    'crossformer/crossformer-l-g14-7-in1k-pre_fpn_4xb4-80k_ade20k-512x512.py': cf_semantic_fpn(
        dict(CF_L, group_size=(14, 14, 7, 7), crs_interval=(16, 8, 2, 1))),
    'crossformer/crossformer-pp-s-g7-in1k-pre_fpn_4xb4-80k_ade20k-512x512.py': cf_semantic_fpn(CF_PP_S),
}


# --------------------------------------------------------------------------- reading a mmdet 3 config
def _plain(value):
    """Config values as plain Python: dicts without mmengine's '_scope_' marks, tuples as lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _keep_ratio_scale(scale):
    return (max(scale), min(scale))  # with keep_ratio, (w, h) and (h, w) mean the same: (longer, shorter)


def _pipeline_steps(pipeline, with_annotations=True):
    """A mmdet 3 / mmseg 1 pipeline as ('step', settings) pairs: image loading and packing left out."""
    steps = []
    for transform in pipeline:
        kind, settings = transform['type'], {k: v for k, v in _plain(transform).items() if k != 'type'}
        if kind in ('LoadImageFromFile', 'PackDetInputs', 'PackSegInputs'):
            continue
        if kind == 'LoadAnnotations':
            if with_annotations:
                steps.append(('annotations', settings))
        elif kind in ('Resize', 'RandomChoiceResize'):
            scales = settings.pop('scales') if kind == 'RandomChoiceResize' else [settings.pop('scale')]
            steps.append(('resize', dict(settings, scales=[_keep_ratio_scale(s) for s in scales])))
        elif kind == 'RandomResize':
            steps.append(('random_resize', settings))
        elif kind == 'RandomCrop':
            steps.append(('crop', settings))
        elif kind == 'RandomFlip':
            steps.append(('flip', settings))
        elif kind == 'PhotoMetricDistortion':
            steps.append(('photometric_distortion', settings))
        elif kind == 'RandomChoice':
            steps.append(('choice', dict(branches=[_pipeline_steps(branch) for branch in settings['transforms']])))
        else:
            steps.append((kind, settings))  # no counterpart in the authors' files: the comparison shows it
    return steps


def _schedule(cfg):
    schedule = {}
    loop = cfg.train_cfg
    if loop.get('max_epochs'):
        schedule['epochs'] = loop.max_epochs
    else:
        schedule['iters'] = loop.max_iters
    for scheduler in cfg.param_scheduler:
        if scheduler.type == 'LinearLR' and not scheduler.by_epoch and scheduler.begin == 0:
            assert scheduler.get('end_factor', 1.0) == 1.0
            schedule.update(warmup_iters=scheduler.end, warmup_ratio=scheduler.start_factor)
        elif scheduler.type == 'MultiStepLR' and scheduler.by_epoch and scheduler.begin == 0:
            assert scheduler.end >= loop.max_epochs
            schedule.update(lr_steps=list(scheduler.milestones), gamma=scheduler.gamma)
        elif scheduler.type == 'PolyLR' and not scheduler.by_epoch:
            schedule.update(poly_power=scheduler.power, poly_min_lr=scheduler.eta_min,
                            poly_iters=[scheduler.begin, scheduler.end])
        else:
            schedule[f'unexpected {scheduler.type}'] = _plain(scheduler)
    return schedule


def _backbone(cfg, name):
    """The backbone's effective arguments: its constructor's defaults, the config's values, and what the arch
    resolves to (embed_dims, depths, heads; CrossFormer's grouping per stage), read from the built backbone."""
    arguments = dict(cfg.model.backbone)
    cls = MODELS.get(arguments.pop('type'))
    # The arguments every backbone takes are PyramidBackbone's, passed on through the subclass's **common.
    settings = {k: p.default for signature in (inspect.signature(PyramidBackbone), inspect.signature(cls))
                for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    settings.update({k: v for k, v in arguments.items() if k not in ('init_cfg', 'arch')})
    backbone = build_on_meta(name).backbone
    settings.update(type=cls.__name__, embed_dims=backbone.embed_dims, depths=backbone.depths,
                    num_heads=backbone.num_heads)
    for attribute in ('window_size', 'group_size', 'crs_interval', 'lda_type', 'use_acl', 'adaptive_interval'):
        if hasattr(backbone, attribute):
            settings[attribute] = getattr(backbone, attribute)
    return _plain(settings)


def _tta(cfg):
    augment = [t for t in cfg.tta_pipeline if t.type == 'TestTimeAug']
    assert len(augment) == 1
    transforms = [t for choices in augment[0].transforms for t in choices]
    ratios = [t.scale_factor for t in transforms if t.type == 'Resize']
    flips = sorted(t.prob for t in transforms if t.type == 'RandomFlip')
    assert flips in ([], [0.0, 1.0]), flips
    return dict(ratios=ratios, flip=flips == [0.0, 1.0])


def recipe_of(name):
    """A mmdet 3 / mmseg 1 config in the terms of RECIPES."""
    cfg = load_cached(name)
    preprocessor = cfg.model.data_preprocessor
    normalize = dict(mean=preprocessor.mean, std=preprocessor.std, to_rgb=preprocessor.bgr_to_rgb)
    if cfg.default_scope == 'mmdet':
        normalize.update(pad_size_divisor=preprocessor.pad_size_divisor)
    else:
        normalize.update(size=preprocessor.size, pad_val=preprocessor.pad_val, seg_pad_val=preprocessor.seg_pad_val)
    optimizer = dict(cfg.optim_wrapper.optimizer)
    if optimizer['type'] == 'AdamW':
        optimizer.setdefault('betas', (0.9, 0.999))  # torch's default
    recipe = {f'model.{key}': value for key, value in cfg.model.items()
              if key not in ('backbone', 'data_preprocessor', 'init_cfg')}
    recipe.update(
        backbone=lambda: _backbone(cfg, name),
        normalize=normalize,
        optimizer=optimizer,
        paramwise=cfg.optim_wrapper.get('paramwise_cfg') or {},
        clip_grad=cfg.optim_wrapper.get('clip_grad'),
        schedule=lambda: _schedule(cfg),
        batch=dict(per_gpu=cfg.train_dataloader.batch_size, total=cfg.auto_scale_lr.base_batch_size),
        train_pipeline=lambda: _pipeline_steps(cfg.train_dataloader.dataset.pipeline),
        test_pipeline=lambda: _pipeline_steps(cfg.test_dataloader.dataset.pipeline, with_annotations=False),
        tta=lambda: _tta(cfg))
    return recipe


def _differences(expected, actual, path=''):
    """Where ``actual`` differs from ``expected``: every key of an expected dict must be there with an equal
    value (extra keys are mmdet 3 additions); lists must match item by item; tuples count as lists."""
    expected, actual = _plain(expected), _plain(actual)
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key, value in expected.items():
            if key not in actual:
                found.append(f'{path}.{key}: missing, expected {value!r}')
            else:
                found += _differences(value, actual[key], f'{path}.{key}')
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in _differences(e, a, f'{path}[{i}]')]
    return [] if expected == actual else [f'{path or "value"}: expected {expected!r}, got {actual!r}']


# Fields compared in full (a config may not add a transform, a scheduler or a decay rule the authors lack);
# the model fields ('model.*') and the backbone are compared key by key.
EXACT = ('normalize', 'optimizer', 'paramwise', 'clip_grad', 'schedule', 'batch', 'train_pipeline',
         'test_pipeline', 'tta')
CASES = [pytest.param(name, field, id=f'{osp.basename(name)[:-3]}-{field}')
         for name, recipe in RECIPES.items() for field in recipe]


@pytest.mark.parametrize('name, field', CASES)
def test_config_has_the_authors_value(name, field):
    expected = RECIPES[name][field]
    actual = recipe_of(name).get(field)
    actual = actual() if callable(actual) else actual
    if field in EXACT:
        assert _plain(actual) == _plain(expected)
    else:
        assert _differences(expected, actual) == []


def test_every_published_config_has_a_recipe():
    """Every config whose metafile entry records something published (results, parameters or FLOPs)."""
    published = {osp.relpath(model['Config'], 'configs') for model in load_model_index(
        osp.join(osp.dirname(CONFIGS), 'model-index.yml'))['Models']
        if model.get('Results') or {'Published Parameters (M)', 'Published FLOPs (G)'} & set(model['Metadata'])}
    assert set(RECIPES) == published
    for name, recipe in RECIPES.items():
        fields = {'backbone', 'normalize', 'optimizer', 'paramwise', 'clip_grad', 'schedule', 'batch',
                  'train_pipeline', 'test_pipeline', 'model.type'}
        assert fields <= set(recipe), name
        assert ('tta' in recipe) == ('upernet' in name), name


@pytest.mark.parametrize('name', [n for n in RECIPES if re.search(r'_\d+xb\d+-', n)])
def test_names_state_the_batch(name):
    """mmseg-style names give GPUs x images per GPU ('8xb2', '4xb4'): the recipe's batch."""
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)-', name).groups())
    assert dict(per_gpu=per_gpu, total=gpus * per_gpu) == RECIPES[name]['batch']


def test_the_comparison_sees_a_changed_value():
    """A changed value in any compared field is a difference, with its path."""
    recipe = RECIPES['swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_4conv1f-giou_ms-crop-1x_coco.py']
    heads = _plain(recipe['model.roi_head'])
    heads['bbox_head'][2]['loss_bbox']['loss_weight'] = 1.0
    assert _differences(recipe['model.roi_head'], heads) == [
        ".bbox_head[2].loss_bbox.loss_weight: expected 10.0, got 1.0"]
    assert _differences(dict(a=[1, 2]), dict(a=[1, 2, 3])) == ['.a: expected [1, 2], got [1, 2, 3]']
    assert _differences(dict(a=dict(b=1)), dict(a=dict())) == ['.a.b: missing, expected 1']
    steps = _pipeline_steps([dict(type='RandomChoiceResize', scales=[(480, 1333)], keep_ratio=True),
                             dict(type='Mosaic', img_scale=(640, 640))])
    assert steps == [('resize', dict(scales=[(1333, 480)], keep_ratio=True)), ('Mosaic', dict(img_scale=[640, 640]))]
