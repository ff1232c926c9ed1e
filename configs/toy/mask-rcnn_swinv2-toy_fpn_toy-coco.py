# Mask R-CNN + FPN with a slim SwinV2 (window 8) on the toy COCO-format set (tools/make_toy_data.py),
# for CPUs: the Swin toy config with the backbone swapped, trained from scratch; SwinV2's position bias
# MLP and logit scales join the norms without weight decay.
_base_ = './mask-rcnn_swin-toy_fpn_toy-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='swin_backbones.SwinTransformerV2',
        embed_dims=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8),
        window_size=8,
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1))
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys=dict(
            _delete_=True,
            cpb_mlp=dict(decay_mult=0.),
            logit_scale=dict(decay_mult=0.),
            norm=dict(decay_mult=0.))))
