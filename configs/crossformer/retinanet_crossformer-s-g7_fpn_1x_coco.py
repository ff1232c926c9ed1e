# RetinaNet + FPN, CrossFormer-S (group size 7, LDA intervals 8, 4, 2, 1), COCO, 1x: the authors' recipe
# (cheerss/CrossFormer, detection/configs/crossformer/retinanet_crossformer_s_fpn_1x_coco.py): FPN over
# stages 2-4 (start_level=1) with P6/P7 from the last stage's output, AdamW lr 1e-4, weight decay 1e-4 on every
# parameter, linear warm-up over 500 iterations, 12 epochs with lr steps at 8 and 11, drop path 0.2, batch 16
# (8 GPUs x 2 images). Published: box AP 44.4, 40.8M params.
# Needs the authors' ImageNet-1K checkpoint at checkpoints/crossformer-s.pth (links in the authors'
# README, https://github.com/cheerss/CrossFormer); any layout the package reads works.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw_warmup500_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)

pretrained = 'checkpoints/crossformer-s.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='swin_backbones.CrossFormer',
        arch='small',  # embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)
        group_size=7,
        crs_interval=(8, 4, 2, 1),
        adaptive_interval=False,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768], start_level=1, add_extra_convs='on_input', num_outs=5))

optim_wrapper = dict(optimizer=dict(weight_decay=0.0001))
