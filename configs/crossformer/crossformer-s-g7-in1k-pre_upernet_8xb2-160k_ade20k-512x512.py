# UperNet + CrossFormer-S (group size 7, LDA intervals 8, 4, 2, 1) on ADE20K, 512x512 crops, 160k
# iterations, batch 16 (8 GPUs x 2 images). CrossFormer's published recipe (cheerss/CrossFormer,
# segmentation/configs/crossformer/upernet_crossformer_s_ade20k.py): AdamW lr 6e-5, weight decay 0.01 except
# for the parameters named 'norm' (norm1, norm2, patch_embed.norm, downsample.norm: not the position bias
# MLP's norms nor CrossFormer++'s ex_ln), linear warm-up over 1500 iterations and poly decay (power 1), drop
# path 0.2, auxiliary FCN head on stage 3. Published: mIoU 47.6 / 48.4 (multi-scale), 62.3M params.
# Needs the authors' ImageNet-1K checkpoint at checkpoints/crossformer-s.pth.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
pretrained = 'checkpoints/crossformer-s.pth'
model = dict(
    data_preprocessor=data_preprocessor,
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
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
# The authors' poly decay runs over all 160k iterations from the first one, and the warm-up scales it during
# the first 1500 (mmcv's warm-up): both schedulers start at 0, and mmengine multiplies them.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=160000, by_epoch=False)
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
# The authors' multi-scale test (--tta): the six ratios of their ade20k_swin.py, without flipping.
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=ratio, keep_ratio=True) for ratio in [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]
