# UperNet with a slim Swin on the toy ADE20K-layout set (tools/make_toy_data.py), for CPUs:
# 128x128 crops, a 4-stage Swin with 32..256 channels, 64-channel UPerHead, 32-channel auxiliary FCN
# head on stage 3, 4 classes, trained from scratch for a few hundred iterations. Same recipe shape as
# the ADE20K configs (AdamW, no decay on position tables and norms, warm-up then poly), scaled down.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    '../_base_/datasets/toy_ade.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)

num_classes = 4
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN in the ADE20K configs; BN runs anywhere
model = dict(
    data_preprocessor=dict(size=crop_size),
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
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=64, num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=128, channels=32, num_classes=num_classes, norm_cfg=norm_cfg))

max_iters = 500
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=30, end=max_iters, by_epoch=False)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=False, window_size=20)
# Training processes on CPUs talk through gloo (tools/train.py also switches to it when there is no GPU).
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
auto_scale_lr = dict(enable=False, base_batch_size=8)
