# RetinaNet + FPN, Swin-T, COCO, 1x: mmdet 3.3's own recipe (configs/swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py)
# with this package's backbone. Stages 2-4 only (out_indices=(1, 2, 3)): every returned stage has an output
# norm, and a norm whose output the FPN never reads would leave parameters without gradients. FPN from its
# first input (start_level=0), extra levels P6/P7 from the last input; SGD lr 0.01, momentum 0.9, weight
# decay 1e-4, warm-up over 500 iterations, lr steps at 8 and 11; drop path 0.2; batch 16 (8 GPUs x 2 images).
# mmdet publishes no box AP for this config.
# Needs the authors' ImageNet-1K checkpoint at checkpoints/swin_tiny_patch4_window7_224.pth:
#   https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)

pretrained = 'checkpoints/swin_tiny_patch4_window7_224.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='swin_backbones.SwinTransformer',
        arch='tiny',  # embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.2,
        patch_norm=True,
        out_indices=(1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768], start_level=0, num_outs=5))

optim_wrapper = dict(optimizer=dict(lr=0.01))
# 8 GPUs x 2 images; --auto-scale-lr rescales the learning rate for other batch sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
