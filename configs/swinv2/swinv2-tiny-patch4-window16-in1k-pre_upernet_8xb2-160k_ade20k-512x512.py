# UperNet + SwinV2-T on ADE20K, 512x512 crops, 160k iterations, batch 16 (8 GPUs x 2 images): the Swin-T
# recipe (AdamW lr 6e-5, weight decay 0.01, warm-up then poly, drop path 0.3, auxiliary FCN head on
# stage 3) with SwinV2's decay-free parameters (the position bias MLP, the logit scales and the norms).
# Window 16 fine-tuned from the ImageNet-1K window-8 checkpoint (pretrained_window_sizes=8, nothing is
# resized). No published mIoU for this model.
# Needs the authors' checkpoint at checkpoints/swinv2_tiny_patch4_window8_256.pth:
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window8_256.pth
_base_ = '../swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'

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
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys=dict(
            _delete_=True,
            cpb_mlp=dict(decay_mult=0.),
            logit_scale=dict(decay_mult=0.),
            norm=dict(decay_mult=0.))))
