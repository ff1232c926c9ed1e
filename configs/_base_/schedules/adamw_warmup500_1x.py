# The 1x detection schedule that Swin's and CrossFormer's authors train with (mmdet 2's schedule_1x.py with
# AdamW instead of SGD): AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, linear warm-up over 500
# iterations from 0.001 of the learning rate, 12 epochs with the learning rate divided by 10 after epochs 8
# and 11, batch 16 (8 GPUs x 2 images). The configs set their weight decay and its exemptions
# (optim_wrapper.optimizer.weight_decay, optim_wrapper.paramwise_cfg); the 3x configs set the epochs and steps.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))
# --auto-scale-lr rescales the learning rate for batch sizes other than 16.
auto_scale_lr = dict(enable=False, base_batch_size=16)
