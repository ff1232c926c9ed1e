# Semantic FPN with a slim CrossFormer on the toy ADE20K-layout set, for CPUs: the twin of the Semantic FPN
# configs (configs/crossformer/*_fpn_4xb4-80k_*): the backbone, data and hooks of
# upernet_crossformer-toy_toy-ade.py, a 64-channel FPN (4 levels) and a 32-channel FPN head, no auxiliary
# head; AdamW with weight decay on every parameter and poly decay (power 0.9) without warm-up, as the authors'
# Semantic FPN recipe.
_base_ = './upernet_crossformer-toy_toy-ade.py'

num_classes = 4
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN in the ADE20K configs; BN runs anywhere
model = dict(
    neck=dict(type='FPN', in_channels=[32, 64, 128, 256], out_channels=64, num_outs=4),
    decode_head=dict(
        _delete_=True,
        type='FPNHead',
        in_channels=[64, 64, 64, 64],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=32,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)

param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end={{_base_.max_iters}}, by_epoch=False)]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4))
