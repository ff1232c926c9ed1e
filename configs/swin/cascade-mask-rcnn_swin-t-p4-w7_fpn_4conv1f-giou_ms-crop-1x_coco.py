# Cascade Mask R-CNN + FPN, Swin-T, COCO, 1x schedule (12 epochs, lr steps at 8 and 11), the Swin paper's
# recipe (SwinTransformer/Swin-Transformer-Object-Detection,
# cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_1x_coco.py):
# three cascade stages whose box heads have 4 shared 3x3 convs with SyncBN and 1 fc ("4conv1f"), regressing
# decoded boxes with a GIoU loss (weight 10); multi-scale training (shorter side 480-800, or resize + random
# crop + resize); AdamW lr 1e-4, weight decay 0.05 except for the position bias tables and norms; drop path
# 0.0 (the authors' 1x file; their 3x files use 0.2 / 0.3); batch 16 (8 GPUs x 2 images).
# Published: box AP 48.1, mask AP 41.7, 86M params.
# Needs the authors' ImageNet-1K checkpoint at checkpoints/swin_tiny_patch4_window7_224.pth:
#   https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/adamw_warmup500_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/datasets/coco_instance_ms-crop-3x.py',
]
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)

pretrained = 'checkpoints/swin_tiny_patch4_window7_224.pth'
# One 4conv1fc head per cascade stage; the stages differ only in the regression targets' stds.
bbox_head_4conv1fc = dict(
    type='ConvFCBBoxHead',
    num_shared_convs=4,
    num_shared_fcs=1,
    in_channels=256,
    conv_out_channels=256,
    fc_out_channels=1024,
    roi_feat_size=7,
    num_classes=80,
    reg_class_agnostic=False,
    reg_decoded_bbox=True,
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
model = dict(
    backbone=dict(
        _delete_=True,
        type='swin_backbones.SwinTransformer',
        arch='tiny',  # embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.0,
        use_abs_pos_embed=False,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]),
    roi_head=dict(bbox_head=[
        dict(bbox_head_4conv1fc,
             bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                             target_stds=[0.1, 0.1, 0.2, 0.2])),
        dict(bbox_head_4conv1fc,
             bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                             target_stds=[0.05, 0.05, 0.1, 0.1])),
        dict(bbox_head_4conv1fc,
             bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                             target_stds=[0.033, 0.033, 0.067, 0.067])),
    ]))

train_dataloader = dict(dataset=dict(pipeline={{_base_.ms_crop_train_pipeline}}))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
