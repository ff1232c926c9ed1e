# RetinaNet + FPN with a slim CrossFormer (32..256 channels, group size 7, LDA intervals 8, 4, 2, 1) on the toy
# COCO-format set (boxes only), for CPUs: the twin of the RetinaNet configs (configs/*/retinanet_*), FPN over
# stages 2-4 with P6/P7 from the last stage's output as in the CrossFormer ones, a 64-channel head with 2
# stacked convs, focal loss; AdamW with weight decay on every parameter, as the authors' RetinaNet recipe.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/toy_coco_detection.py',
    '../_base_/schedules/toy_det_runtime.py',
]
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)

channels = 64
model = dict(
    backbone=dict(
        _delete_=True,
        type='swin_backbones.CrossFormer',
        embed_dims=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8),
        group_size=7,
        crs_interval=(8, 4, 2, 1),
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=channels, start_level=1, add_extra_convs='on_input'),
    bbox_head=dict(num_classes=3, in_channels=channels, feat_channels=channels, stacked_convs=2),
    # Scores start at the focal loss prior (0.01): a low threshold keeps an early model's boxes, so that even
    # a run of a few iterations is evaluated.
    test_cfg=dict(nms_pre=500, score_thr=0.005, max_per_img=20))
optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))
