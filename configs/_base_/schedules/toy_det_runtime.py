# Schedule and runtime of the toy detection configs (configs/toy/*_toy-coco.py), for CPUs: 300 iterations of
# AdamW (lr 1e-3, weight decay 0.05, gradients clipped at norm 10) with a 50-iteration warm-up and cosine
# decay, validation and one checkpoint at the end, logs every 20 iterations. The configs add the weight decay
# exemptions of their backbone (optim_wrapper.paramwise_cfg).
_base_ = 'mmdet::_base_/default_runtime.py'

max_iters = 300
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min_ratio=0.05, by_epoch=False, begin=0, end=max_iters),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=2))
log_processor = dict(by_epoch=False, window_size=20)
# Training processes on CPUs talk through gloo (tools/train.py also switches to it when there is no GPU).
env_cfg = dict(dist_cfg=dict(backend='gloo'))
auto_scale_lr = dict(enable=False, base_batch_size=4)
