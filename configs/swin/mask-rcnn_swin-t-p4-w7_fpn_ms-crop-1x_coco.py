# Mask R-CNN + FPN, Swin-T backbone, COCO, 1x schedule (12 epochs, lr steps at 8 and 11).
# Swin's published recipe (SwinTransformer/Swin-Transformer-Object-Detection,
# mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py): multi-scale training as in the 3x
# configs (shorter side 480-800, or resize + random crop + resize) although the schedule is 1x, AdamW lr 1e-4,
# weight decay 0.05 except for the position bias tables and norms, warm-up over 500 iterations, drop path 0.1,
# batch 16 (8 GPUs x 2 images). (mmdet's own mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py trains on one scale with
# drop path 0.2: 42.7 / 39.3.) Published: box AP 43.7, mask AP 39.8, 47.8M params.
# Needs the authors' ImageNet-1K checkpoint at checkpoints/swin_tiny_patch4_window7_224.pth:
#   https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/adamw_warmup500_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/datasets/coco_instance_ms-crop-3x.py',
]
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)

pretrained = 'checkpoints/swin_tiny_patch4_window7_224.pth'
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
        drop_path_rate=0.1,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

train_dataloader = dict(dataset=dict(pipeline={{_base_.ms_crop_train_pipeline}}))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
