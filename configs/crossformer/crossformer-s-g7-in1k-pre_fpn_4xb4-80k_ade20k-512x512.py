# Semantic FPN + CrossFormer-S (group size 7, LDA intervals 8, 4, 2, 1) on ADE20K, 512x512 crops: the authors'
# recipe (cheerss/CrossFormer, segmentation/configs/crossformer/fpn_crossformer_s_ade20k_40k.py). The file is
# named 40k but sets 80k iterations (max_iters=80000) at 4 images per GPU, and the authors' README gives 80k
# iterations at batch 16: 4 GPUs x 4 images here. AdamW lr 1e-4, weight decay 1e-4 on every parameter, poly
# decay (power 0.9) to 0 without warm-up, drop path 0.2. Published: mIoU 46.4 (single scale), 34.3M params.
# Needs the authors' ImageNet-1K checkpoint at checkpoints/crossformer-s.pth (links in the authors' README,
# https://github.com/cheerss/CrossFormer); any layout the package reads works.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
pretrained = 'checkpoints/crossformer-s.pth'
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
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
    neck=dict(in_channels=[96, 192, 384, 768]),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.0001))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000, by_epoch=False)]
train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
# 4 GPUs x 4 images; --auto-scale-lr rescales the learning rate for other batch sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
