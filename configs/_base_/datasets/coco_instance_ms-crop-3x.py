# The multi-scale training pipeline of the Swin paper's detection recipes ("mstrain_480-800" in the authors'
# file names, with 1x and 3x schedules alike): shorter side 480-800, or resize + random crop + resize (as in
# DETR). Shared by the Swin Mask R-CNN and Cascade Mask R-CNN configs and the CrossFormer 3x config, which put
# it into their train_dataloader; the name keeps it from clashing with the data set base's train_pipeline.
ms_crop_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[
            dict(
                type='RandomChoiceResize',
                scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
                        (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)],
                keep_ratio=True)
        ], [
            dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
            dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
            dict(
                type='RandomChoiceResize',
                scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
                        (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)],
                keep_ratio=True)
        ]]),
    dict(type='PackDetInputs')
]
