# UperNet + CrossFormer++-S (CrossFormer++'s LDA with a fixed interval, ACL) on ADE20K (recipe as
# CrossFormer-S, drop path 0.2). Needs checkpoints/crossformer-pp-s.pth.
_base_ = './crossformer-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/crossformer-pp-s.pth'
model = dict(
    backbone=dict(
        arch='pp-small',  # embed_dims=64, depths=(2, 2, 18, 2), num_heads=(2, 4, 8, 16), ACL
        adaptive_interval=False,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
