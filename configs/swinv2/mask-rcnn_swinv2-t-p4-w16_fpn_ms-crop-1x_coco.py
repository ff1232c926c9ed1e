# Mask R-CNN + FPN, SwinV2-T backbone, COCO, 1x schedule (12 epochs, lr steps at 8 and 11).
# Window 16 fine-tuned from the ImageNet-1K window-8 checkpoint: pretrained_window_sizes=8 keeps the
# position bias MLP's inputs on the scale it was trained on (nothing is resized). The recipe is the Swin-T
# one (multi-scale training with the crop step, AdamW lr 1e-4, weight decay 0.05, warm-up over 500 iterations,
# batch 16) with drop path 0.2 and SwinV2's decay-free parameters (the position bias MLP, the logit scales and
# the norms). No published box/mask AP for this model.
# Needs the authors' checkpoint at checkpoints/swinv2_tiny_patch4_window8_256.pth:
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window8_256.pth
_base_ = '../swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py'

pretrained = 'checkpoints/swinv2_tiny_patch4_window8_256.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='swin_backbones.SwinTransformerV2',
        arch='tiny',  # embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)
        window_size=16,
        pretrained_window_sizes=(8, 8, 8, 8),
        mlp_ratio=4,
        qkv_bias=True,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys=dict(
            _delete_=True,
            cpb_mlp=dict(decay_mult=0.),
            logit_scale=dict(decay_mult=0.),
            norm=dict(decay_mult=0.))))
